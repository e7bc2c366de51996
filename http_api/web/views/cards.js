// A video card: poster (with storyboard scrubbing, and the 3 s silent preview looping while
// the card is on screen), title, author, views, age.

import { mediaUrl } from '../config.js';
import { attachScrub } from '../storyboard.js';
import { h, compact, duration, ago, avatar, profileHref, plural } from '../ui.js';

export function videoCard(video) {
  const thumbSrc = video.thumbnail_url || video.thumbnail;
  const thumb = h('div', { class: 'thumb', testid: 'video-thumb' },
    thumbSrc ? h('img', { src: mediaUrl(thumbSrc), alt: '', loading: 'lazy', draggable: 'false' }) : h('div', { class: 'thumb-empty' }, video.status === 'ready' ? '' : (video.status || '')),
    video.preview_url ? previewLoop(video.preview_url) : null,
    video.duration ? h('span', { class: 'badge-duration' }, duration(video.duration)) : null,
    video.visibility && video.visibility !== 'public' ? h('span', { class: 'badge-visibility' }, video.visibility) : null);
  attachScrub(thumb, video.storyboard);
  const author = video.author || {};
  return h('article', { class: 'video-card', testid: 'video-card', dataset: { videoId: video.id } },
    h('a', { href: `#/watch/${video.id}`, class: 'card-link', testid: 'video-card-link', 'aria-label': `Watch ${video.title || 'video'}` }, thumb),
    h('div', { class: 'card-meta' },
      author.id ? h('a', { href: profileHref(author), class: 'card-avatar', 'aria-label': author.display_name || author.username }, avatar(author, 32)) : null,
      h('div', { class: 'card-text' },
        h('a', { href: `#/watch/${video.id}`, class: 'card-title', testid: 'video-card-title' }, video.title || 'Untitled'),
        author.id ? h('a', { href: profileHref(author), class: 'card-author' }, author.display_name || author.username) : null,
        h('span', { class: 'card-stats' }, `${compact(video.view_count ?? video.views ?? 0)}${plural(video.view_count ?? video.views ?? 0, ' view', ' views')} · ${ago(video.published_at || video.created_at)}`))));
}

// Previews play only while their card is mostly on screen (and never with sound).
const onScreen = typeof IntersectionObserver === 'function'
  ? new IntersectionObserver((entries) => {
    for (const { target, isIntersecting } of entries) {
      if (isIntersecting) target.play().catch(() => {});
      else target.pause();
    }
  }, { threshold: 0.6 })
  : null;

function previewLoop(url) {
  const el = h('video', { class: 'thumb-preview', testid: 'video-preview', src: mediaUrl(url), preload: 'none', 'aria-hidden': 'true' });
  el.muted = true;
  el.loop = true;
  el.playsInline = true;
  el.disablePictureInPicture = true;
  if (onScreen) onScreen.observe(el);
  return el;
}
