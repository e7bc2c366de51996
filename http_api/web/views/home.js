// Home: the stories bar (signed in), then the feed with tabs latest / trending / following.

import * as api from '../api.js';
import { h, clear } from '../ui.js';
import { videoCard } from './cards.js';
import { storiesBar } from './stories.js';

const TABS = [
  { key: 'latest', label: 'Latest' },
  { key: 'trending', label: 'Trending' },
  { key: 'following', label: 'Following' },
];

let lastTab = 'latest';

export function render(root, { query }) {
  const cleanups = [];
  let tab = query.get('tab') || lastTab;
  if (!TABS.some((t) => t.key === tab)) tab = 'latest';

  const page = h('section', { class: 'home' });
  root.append(page);

  if (api.isSignedIn()) {
    const bar = storiesBar();
    page.append(bar.el);
    cleanups.push(bar.destroy);
  }

  const tabButtons = TABS.map((t) => h('button', {
    type: 'button', role: 'tab', class: 'tab', testid: `tab-${t.key}`, id: `tab-${t.key}`,
    'aria-controls': 'feed-panel', onclick: () => select(t.key),
  }, t.label));
  const grid = h('div', { class: 'video-grid', testid: 'video-grid', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'btn btn-ghost more', testid: 'feed-more', hidden: true }, 'Load more');
  const note = h('p', { class: 'empty-note', testid: 'feed-empty', hidden: true });
  page.append(
    h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Feed', testid: 'feed-tabs' }, tabButtons),
    h('div', { id: 'feed-panel', role: 'tabpanel' }, grid, note, more));

  let token = 0;
  let cursor = null;
  let pageNo = 1;

  async function load(reset) {
    const mine = ++token;
    if (reset) { clear(grid); cursor = null; pageNo = 1; note.hidden = true; more.hidden = true; grid.classList.add('loading'); }
    if (tab === 'following' && !api.isSignedIn()) {
      grid.classList.remove('loading');
      note.hidden = false;
      clear(note).append('Sign in to see videos from people you follow. ', h('a', { href: '#/login' }, 'Sign in'));
      return;
    }
    const q = { limit: 24 };
    if (cursor) q.cursor = cursor; else if (pageNo > 1) q.page = pageNo;
    try {
      const body = tab === 'following'
        ? await api.get('/api/users/me/following/videos', { query: q, auth: 'required' })
        : await api.get('/api/videos', { query: { ...q, sort: tab } });
      if (mine !== token) return;
      grid.classList.remove('loading');
      const seen = new Set([...grid.children].map((c) => c.dataset.videoId));
      for (const v of body.videos || []) if (!seen.has(v.id)) grid.append(videoCard(v));
      cursor = body.next_cursor || null;
      pageNo += 1;
      const hasNext = !!(body.next_cursor || (body.pagination && body.pagination.has_next));
      more.hidden = !hasNext;
      if (!grid.children.length) {
        note.hidden = false;
        note.textContent = tab === 'following' ? 'Nobody you follow has posted a video yet.' : 'No videos yet. Be the first to upload one!';
      }
    } catch (err) {
      if (mine !== token) return;
      grid.classList.remove('loading');
      note.hidden = false;
      note.textContent = `Could not load videos: ${err.message}`;
    }
  }

  function select(key) {
    tab = key;
    lastTab = key;
    for (const b of tabButtons) {
      const on = b.id === `tab-${key}`;
      b.setAttribute('aria-selected', on ? 'true' : 'false');
      b.classList.toggle('active', on);
      b.tabIndex = on ? 0 : -1;
    }
    load(true);
  }

  more.addEventListener('click', () => load(false));
  select(tab);
  return () => { token += 1; for (const fn of cleanups) fn(); };
}
