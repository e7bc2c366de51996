// Reelwire reference web client: hash routing, the top bar, the realtime connection.
//
// data-testid attributes (stable; browser tests rely on them):
//   layout:   nav-home, nav-upload, nav-profile, nav-login, nav-logout, connection-status
//             (data-state = idle|connecting|open|reconnecting|offline), toast, page-error
//   sign in:  login-form, login-identifier, login-password, login-submit, login-error,
//             go-register
//   sign up:  register-form, register-username, register-email, register-display-name,
//             register-password, register-submit, register-error, go-login
//             field errors under any form field: field-error-<field name>
//   home:     feed-tabs, tab-latest, tab-trending, tab-following (aria-selected), video-grid,
//             video-card (data-video-id), video-card-link, video-thumb, storyboard-preview
//             (data-tile = tile index shown), video-card-title, feed-empty, feed-more
//   stories:  stories-bar, story-item (data-clip-id, data-user-id, data-own), story-add,
//             story-viewer (dialog), story-image, story-video, story-caption, story-author,
//             story-close, story-next, story-prev, story-react (data-emoji), story-reactions,
//             story-viewers (owner only), story-viewer-item (data-user-id),
//             story-view-count (data-value), story-viewers-more, story-delete,
//             story-upload-form, story-file, story-caption-input, story-submit,
//             story-upload-progress, story-upload-error, story-cancel
//   watch:    watch-page (data-video-id), video-player (the <video>), player-status,
//             quality-menu (<select>: value -1 = Auto, else the hls.js level index; options
//             data-testid quality-option), quality-current, video-title, video-description,
//             video-author, view-count, like-count, dislike-count, comment-count, viewer-count,
//             like-button, dislike-button (aria-pressed), processing-status,
//             comment-form, comment-input, comment-submit, comment-error, comment-list,
//             comment-item (data-comment-id, data-parent-id), comment-content, comment-author,
//             reply-button, reply-form, reply-input, reply-submit, replies-toggle, reply-list,
//             comment-delete, comments-more
//   upload:   upload-form, upload-file, upload-title, upload-description, upload-visibility,
//             upload-submit, upload-error, upload-progress (<progress>, bytes, value 0..100),
//             upload-progress-text, transcode-progress (<progress>, 0..100), transcode-status
//             (data-status = pending|processing|ready|failed), transcode-error, upload-watch-link
//   profile:  profile-page (data-user-id), profile-avatar, profile-display-name,
//             profile-username, profile-bio, profile-followers, profile-following,
//             follow-button (data-following = true|false), profile-videos (video-card inside),
//             profile-edit-form, profile-edit-display-name, profile-edit-bio, profile-edit-submit
//
// For tests: window.reelwire = {api, realtime, apiBase}; realtime.drop() drops the socket.

import * as api from './api.js';
import { API_BASE } from './config.js';
import { realtime } from './socket.js';
import { h, clear, toast } from './ui.js';
import * as home from './views/home.js';
import * as watch from './views/watch.js';
import * as upload from './views/upload.js';
import * as profile from './views/profile.js';
import * as auth from './views/auth.js';

const routes = [
  { pattern: /^\/?$/, view: home, name: 'home' },
  { pattern: /^\/watch\/([^/]+)$/, view: watch, name: 'watch' },
  { pattern: /^\/upload$/, view: upload, name: 'upload', signedIn: true },
  { pattern: /^\/u\/([^/]+)$/, view: profile, name: 'profile' },
  { pattern: /^\/login$/, view: auth, name: 'login', mode: 'login' },
  { pattern: /^\/register$/, view: auth, name: 'register', mode: 'register' },
];

const root = document.getElementById('app');
let cleanup = null;
let userChannel = null;

function navLink(href, text, testid) {
  return h('a', { href, class: 'nav-link', testid }, text);
}

const statusLabels = {
  idle: 'Standby', connecting: 'Connecting…', open: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline',
};

function renderShell() {
  clear(root);
  const status = h('span', {
    class: 'conn', testid: 'connection-status', role: 'status', 'aria-live': 'polite',
    title: 'Realtime connection', dataset: { state: realtime.state },
  }, h('span', { class: 'conn-label' }));
  const paintStatus = (state) => {
    status.dataset.state = state;
    status.firstChild.textContent = statusLabels[state] || state;
    status.setAttribute('aria-label', `Realtime connection: ${statusLabels[state] || state}`);
  };
  paintStatus(realtime.state);
  realtime.addEventListener('state', (e) => paintStatus(e.detail));
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' });
  const header = h('header', { class: 'topbar' },
    h('a', { href: '#/', class: 'brand', testid: 'nav-home', 'aria-label': 'Reelwire home' },
      h('span', { class: 'brand-mark', 'aria-hidden': 'true' }, '▶'), h('span', { class: 'brand-name' }, 'Reelwire')),
    nav, status);
  const main = h('main', { id: 'view', class: 'view', tabindex: '-1' });
  root.append(header, main);
  renderNav(nav);
  return { nav, main };
}

function renderNav(nav) {
  clear(nav);
  const user = api.currentUser();
  if (user) {
    nav.append(
      navLink('#/upload', 'Upload', 'nav-upload'),
      navLink(`#/u/${user.id}`, user.display_name || user.username, 'nav-profile'),
      h('button', {
        class: 'nav-link btn-link', type: 'button', testid: 'nav-logout',
        onclick: async () => { await api.logout(); location.hash = '#/'; },
      }, 'Sign out'),
    );
  } else {
    nav.append(navLink('#/login', 'Sign in', 'nav-login'), navLink('#/register', 'Sign up', 'nav-register'));
  }
}

let shell = null;

function route() {
  const path = decodeURIComponent((location.hash || '#/').slice(1)) || '/';
  const clean = path.split('?')[0];
  if (cleanup) { try { cleanup(); } catch (e) { console.warn(e); } cleanup = null; }
  clear(shell.main);
  window.scrollTo(0, 0);
  for (const r of routes) {
    const m = clean.match(r.pattern);
    if (!m) continue;
    if (r.signedIn && !api.isSignedIn()) {
      location.hash = `#/login?next=${encodeURIComponent(clean)}`;
      return;
    }
    document.body.dataset.route = r.name;
    try {
      cleanup = r.view.render(shell.main, { params: m.slice(1).map(decodeURIComponent), mode: r.mode, query: new URLSearchParams(path.split('?')[1] || '') }) || null;
    } catch (e) {
      console.error(e);
      shell.main.append(h('p', { class: 'error', testid: 'page-error' }, 'Something went wrong showing this page.'));
    }
    return;
  }
  document.body.dataset.route = 'notfound';
  shell.main.append(h('section', { class: 'empty' }, h('h1', null, 'Page not found'), h('a', { href: '#/' }, 'Go home')));
}

function followUser() {
  const user = api.currentUser();
  realtime.setUser(user ? user.id : null);
  if (userChannel) { userChannel(); userChannel = null; }
  if (!user) return;
  userChannel = realtime.subscribe(`user:${user.id}`, {
    onEvent(msg) {
      if (msg.type === 'new_follower' && msg.follower) {
        toast(`${msg.follower.display_name || msg.follower.username} followed you`);
      } else if (msg.type === 'processing' && (msg.status === 'ready' || msg.status === 'failed') && document.body.dataset.route !== 'upload') {
        toast(msg.status === 'ready' ? 'Your video is ready' : `Processing failed: ${msg.error || 'unknown error'}`, msg.status === 'ready' ? 'info' : 'error');
      }
    },
  });
}

function start() {
  shell = renderShell();
  followUser();
  let lastUser = (api.currentUser() || {}).id || null;
  api.onAuthChange(() => {
    renderNav(shell.nav);
    const now = (api.currentUser() || {}).id || null;
    if (now === lastUser) return; // the same user's profile was refreshed
    lastUser = now;
    followUser();
    if (!document.body.dataset.keepRoute) route();
  });
  window.addEventListener('hashchange', route);
  route();
  // Refresh the stored profile (and find out early whether the session is still valid).
  if (api.isSignedIn()) api.me().catch(() => {});
  window.reelwire = { api, realtime, apiBase: API_BASE };
}

start();
