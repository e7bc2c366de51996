// Profile (#/u/<user id or username>): who they are, counts, follow button, their videos.

import * as api from '../api.js';
import { mediaUrl } from '../config.js';
import { realtime } from '../socket.js';
import { h, clear, compact, field, showFormError, toast, isUuid } from '../ui.js';
import { videoCard } from './cards.js';

/** A user id for what is in the URL: an id, `me`, or a username (the API takes either). */
async function resolveUserId(ref) {
  const me = api.currentUser();
  if (ref === 'me' && me) return me.id;
  if (isUuid(ref)) return ref;
  try {
    return (await api.get(`/api/users/${encodeURIComponent(ref.replace(/^@/, ''))}`)).user.id;
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

async function videosOf(userId, own) {
  if (own) {
    // Your library lists every video of yours (unlisted and private too).
    const lib = await api.get('/api/v1/videos/s3-videos', { query: { page_size: 50 }, auth: 'required' });
    const ids = (lib.videos || []).map((v) => v.id);
    const all = await Promise.all(ids.map((id) => api.get(`/api/videos/${id}`).catch(() => null)));
    return all.filter(Boolean);
  }
  const body = await api.get('/api/videos', { query: { author: userId, sort: 'latest', limit: 48 } });
  return body.videos || [];
}

export function render(root, { params }) {
  const ref = params[0];
  let destroyed = false;
  const page = h('section', { class: 'profile', testid: 'profile-page' });
  root.append(page);
  const cleanups = [];

  (async () => {
    let userId;
    try {
      userId = await resolveUserId(ref);
    } catch (err) {
      userId = null;
    }
    if (destroyed) return;
    if (!userId) {
      page.append(h('div', { class: 'empty', testid: 'page-error' }, h('h1', null, 'User not found'), h('a', { href: '#/' }, 'Back to home')));
      return;
    }
    page.dataset.userId = userId;
    const me = api.currentUser();
    const own = !!(me && me.id === userId);
    let user;
    try {
      user = (await api.get(`/api/users/${userId}`)).user;
    } catch (err) {
      if (destroyed) return;
      page.append(h('div', { class: 'empty', testid: 'page-error' }, h('h1', null, err.status === 404 ? 'User not found' : 'Could not load this profile'), h('p', { class: 'muted' }, err.message)));
      return;
    }
    if (destroyed) return;
    document.title = `${user.display_name || user.username} · Reelwire`;

    const avatarImg = h('div', { class: 'profile-avatar', testid: 'profile-avatar' },
      h('span', { 'aria-hidden': 'true' }, (user.display_name || user.username || '?').slice(0, 1).toUpperCase()));
    if (user.avatar_url) {
      const img = h('img', { src: mediaUrl(user.avatar_url), alt: `${user.display_name || user.username}'s avatar` });
      img.addEventListener('error', () => img.remove());
      avatarImg.append(img);
    }
    const nameEl = h('h1', { class: 'profile-name', testid: 'profile-display-name' }, user.display_name || user.username);
    const bioEl = h('p', { class: 'profile-bio', testid: 'profile-bio' }, user.bio || '');
    const followers = h('strong', { testid: 'profile-followers', dataset: { value: user.follower_count } }, compact(user.follower_count));
    const following = h('strong', { testid: 'profile-following', dataset: { value: user.following_count } }, compact(user.following_count));
    const setFollowers = (n) => { followers.textContent = compact(n); followers.dataset.value = String(n); };
    const actions = h('div', { class: 'profile-actions' });

    if (!own) {
      let isFollowing = !!user.is_following;
      const btn = h('button', { type: 'button', class: 'btn', testid: 'follow-button' });
      const paint = () => {
        btn.textContent = isFollowing ? 'Following' : 'Follow';
        btn.className = isFollowing ? 'btn btn-ghost' : 'btn btn-primary';
        btn.dataset.following = String(isFollowing);
        btn.setAttribute('aria-pressed', String(isFollowing));
        btn.setAttribute('aria-label', isFollowing ? `Unfollow ${user.username}` : `Follow ${user.username}`);
      };
      paint();
      btn.addEventListener('click', async () => {
        if (!api.isSignedIn()) { location.hash = `#/login?next=${encodeURIComponent(`/u/${userId}`)}`; return; }
        btn.disabled = true;
        try {
          const body = await api.request(isFollowing ? 'DELETE' : 'POST', `/api/users/${userId}/follow`, { auth: 'required' });
          isFollowing = !!body.following;
          if (typeof body.follower_count === 'number') setFollowers(body.follower_count);
          paint();
        } catch (err) {
          toast(err.message, 'error');
        } finally {
          btn.disabled = false;
        }
      });
      actions.append(btn);
    } else {
      const editBtn = h('button', { type: 'button', class: 'btn btn-ghost', testid: 'profile-edit' }, 'Edit profile');
      editBtn.addEventListener('click', () => { editForm.hidden = !editForm.hidden; });
      actions.append(editBtn);
      // Live follower count from user:<me>.
      cleanups.push(realtime.subscribe(`user:${userId}`, {
        onEvent(msg) { if (msg.type === 'new_follower' && typeof msg.follower_count === 'number') setFollowers(msg.follower_count); },
      }));
    }

    const editError = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const editForm = h('form', { id: 'profile-edit-form', class: 'card form', testid: 'profile-edit-form', hidden: true },
      editError,
      field('Display name', h('input', { name: 'display_name', maxlength: 200, value: user.display_name || '', testid: 'profile-edit-display-name' })),
      field('Bio', h('textarea', { name: 'bio', maxlength: 500, rows: 3, testid: 'profile-edit-bio' }, user.bio || '')),
      field('Avatar URL', h('input', { name: 'avatar_url', maxlength: 1000, value: user.avatar_url || '', testid: 'profile-edit-avatar' })),
      h('button', { type: 'submit', class: 'btn btn-primary', testid: 'profile-edit-submit' }, 'Save'));
    editForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      showFormError(editForm, editError, null);
      const data = {};
      for (const [k, v] of new FormData(editForm)) if (String(v) !== String(user[k] || '')) data[k] = String(v);
      if (!Object.keys(data).length) { editForm.hidden = true; return; }
      try {
        const body = await api.patch('/api/users/me', data, { auth: 'required' });
        const u = body.user || body;
        nameEl.textContent = u.display_name || u.username;
        bioEl.textContent = u.bio || '';
        Object.assign(user, u);
        api.setUser({ display_name: u.display_name, bio: u.bio, avatar_url: u.avatar_url });
        editForm.hidden = true;
        toast('Profile saved');
      } catch (err) {
        showFormError(editForm, editError, err);
      }
    });

    const grid = h('div', { class: 'video-grid', testid: 'profile-videos' });
    const note = h('p', { class: 'empty-note muted' }, 'Loading videos…');
    page.append(
      h('header', { class: 'profile-head' },
        avatarImg,
        h('div', { class: 'profile-info' },
          nameEl,
          h('p', { class: 'muted', testid: 'profile-username' }, `@${user.username}`),
          bioEl,
          h('p', { class: 'profile-counts' },
            h('span', null, followers, ' followers'), h('span', null, following, ' following'))),
        actions),
      editForm,
      h('h2', { class: 'section-title' }, own ? 'Your videos' : 'Videos'),
      grid, note);

    try {
      const videos = await videosOf(userId, own);
      if (destroyed) return;
      for (const v of videos) grid.append(videoCard(v));
      note.textContent = videos.length ? '' : 'No videos yet.';
      note.hidden = !!videos.length;
    } catch (err) {
      if (!destroyed) note.textContent = `Could not load videos: ${err.message}`;
    }
  })();

  return () => {
    destroyed = true;
    for (const fn of cleanups) fn();
    document.title = 'Reelwire';
  };
}
