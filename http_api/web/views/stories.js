// Stories: followed users' 24-hour clips in a bar (live from feed:clips), a viewer that records
// views and takes emoji reactions (the owner sees who watched, live from clip_viewed on
// user:<me>), and "add a story".

import * as api from '../api.js';
import { mediaUrl } from '../config.js';
import { attachHls } from '../player.js';
import { realtime } from '../socket.js';
import { h, clear, ago, field, showFormError, toast } from '../ui.js';

const EMOJIS = ['❤️', '😂', '😮', '😢', '👏', '🔥'];
const IMAGE_SECONDS = 5;
const VIEWERS_PAGE = 20;

function clipImage(clip) {
  if (clip.thumbnail_url) return mediaUrl(clip.thumbnail_url);
  // While processing, file_url is the original, which goes away once converted.
  if (clip.kind === 'image' && clip.file_url && clip.status === 'ready') return mediaUrl(clip.file_url);
  return '';
}

export function storiesBar() {
  const me = api.currentUser();
  const list = h('ul', { class: 'stories-list', role: 'list' });
  const el = h('section', { class: 'stories', testid: 'stories-bar', 'aria-label': 'Stories' }, list);
  let own = [];
  let followed = [];
  let pollTimer = null;
  let destroyed = false;
  let loadToken = 0;

  const addButton = h('li', { class: 'story story-add-item' },
    h('button', { type: 'button', class: 'story-btn', testid: 'story-add', 'aria-label': 'Add a story', onclick: () => openUpload() },
      h('span', { class: 'story-ring add' }, h('span', { class: 'story-plus', 'aria-hidden': 'true' }, '+')),
      h('span', { class: 'story-name' }, 'Add story')));

  function all() {
    return own.concat(followed);
  }

  function draw() {
    clear(list);
    list.append(addButton);
    const clips = all();
    clips.forEach((clip, i) => {
      const mine = me && clip.user_id === me.id;
      const img = clipImage(clip);
      const name = mine ? 'You' : (clip.uploaded_by || 'someone');
      list.append(h('li', { class: 'story' },
        h('button', {
          type: 'button', class: 'story-btn', testid: 'story-item',
          dataset: { clipId: clip.id, userId: clip.user_id, own: mine ? 'true' : 'false', status: clip.status },
          'aria-label': `${mine ? 'Your story' : `Story from ${name}`}${clip.caption ? `: ${clip.caption}` : ''}`,
          onclick: () => openViewer(all(), i),
        },
        h('span', { class: `story-ring${mine ? ' own' : ''}${clip.status !== 'ready' ? ' pending' : ''}` },
          img ? h('img', { src: img, alt: '', loading: 'lazy', onerror: staleMedia }) : h('span', { class: 'story-initial' }, name.slice(0, 1).toUpperCase())),
        h('span', { class: 'story-name' }, name))));
    });
    el.classList.toggle('empty', clips.length === 0);
    schedulePoll();
  }

  async function load() {
    if (!me) return;
    const mine = ++loadToken;
    try {
      const [a, b] = await Promise.all([
        api.get(`/api/clips/user/${me.id}`, { auth: 'required' }).catch(() => ({ clips: [] })),
        api.get('/api/clips/all', { auth: 'required' }),
      ]);
      if (destroyed || mine !== loadToken) return;
      own = (a.clips || []);
      followed = (b.clips || []).filter((c) => c.user_id !== me.id);
      draw();
    } catch (err) {
      if (!destroyed) console.warn('stories', err);
    }
  }

  // A processing clip's original goes away once it is converted: fetch the current URLs.
  let staleAt = 0;
  function staleMedia() {
    if (Date.now() - staleAt < 5000) return;
    staleAt = Date.now();
    setTimeout(load, 500);
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    if (destroyed) return;
    if (all().some((c) => c.status === 'processing')) pollTimer = setTimeout(load, 3000);
  }

  const unsubscribe = realtime.subscribe('feed:clips', {
    onEvent(msg) {
      if (msg.type !== 'clip_feed' || !msg.clip) return;
      const clip = msg.clip;
      if (msg.action === 'added') {
        followed = [clip].concat(followed.filter((c) => c.id !== clip.id));
      } else if (msg.action === 'updated') {
        // Its media finished processing: same place in the bar, new picture.
        const known = followed.some((c) => c.id === clip.id);
        followed = known ? followed.map((c) => (c.id === clip.id ? clip : c)) : [clip].concat(followed);
      } else {
        followed = followed.filter((c) => c.id !== clip.id);
        own = own.filter((c) => c.id !== clip.id);
        viewerRemoved(clip.id);
      }
      draw();
    },
    // (Re)subscribed, recovered or not: this feed has no single offset, so reload it.
    onSubscribed() { load(); },
  });

  // Who is watching your own story, as they watch.
  const unsubscribeViews = me ? realtime.subscribe(`user:${me.id}`, {
    onEvent(msg) {
      const audience = viewer && viewer.audience;
      if (msg.type === 'clip_viewed' && msg.viewer && audience && audience.clip.id === msg.clip_id) {
        addViewer(audience, msg);
      }
    },
    // Views were missed: read the list again.
    onReset() { if (viewer && viewer.audience) loadViewers(viewer.audience); },
  }) : () => {};

  draw();
  load();

  return {
    el,
    destroy() {
      destroyed = true;
      clearTimeout(pollTimer);
      unsubscribe();
      unsubscribeViews();
      closeViewer();
      closeUpload();
    },
  };

  // ---- add a story -------------------------------------------------------------------------

  function openUpload() {
    closeUpload();
    const error = h('p', { class: 'form-error', testid: 'story-upload-error', role: 'alert', hidden: true });
    const progress = h('progress', { max: 100, value: 0, testid: 'story-upload-progress', 'aria-label': 'Story upload progress', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'story-submit' }, 'Share story');
    const cancel = h('button', { type: 'button', class: 'btn btn-ghost', testid: 'story-cancel', onclick: () => closeUpload() }, 'Cancel');
    const form = h('form', { id: 'story-upload-form', class: 'form', testid: 'story-upload-form' },
      h('h2', { id: 'story-upload-title' }, 'Add a story'),
      h('p', { class: 'muted' }, 'An image or a short video, visible to your followers for 24 hours.'),
      error,
      field('Image or video', h('input', { type: 'file', name: 'clip', accept: 'image/*,video/*', required: true, testid: 'story-file' })),
      field('Caption (optional)', h('input', { name: 'caption', maxlength: 500, testid: 'story-caption-input' })),
      progress,
      h('div', { class: 'row' }, submit, cancel));
    let job = null;
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      showFormError(form, error, null);
      const fd = new FormData(form);
      const file = fd.get('clip');
      if (!file || !file.size) { showFormError(form, error, { message: 'Choose an image or a video first.' }); return; }
      submit.disabled = true;
      progress.hidden = false;
      job = api.upload('/api/clips/upload', fd, {
        onProgress(loaded, total) { if (total) progress.value = Math.round((loaded / total) * 100); },
      });
      try {
        const body = await job.promise;
        progress.value = 100;
        if (body && body.clip) own = [body.clip].concat(own.filter((c) => c.id !== body.clip.id));
        draw();
        closeUpload();
        toast('Story shared');
      } catch (err) {
        showFormError(form, error, err);
        submit.disabled = false;
      }
    });
    const dialog = h('div', { class: 'modal-backdrop', testid: 'story-upload-dialog' },
      h('div', { class: 'modal card', role: 'dialog', 'aria-modal': 'true', 'aria-labelledby': 'story-upload-title' }, form));
    dialog.addEventListener('click', (e) => { if (e.target === dialog) closeUpload(); });
    dialog.addEventListener('keydown', (e) => { if (e.key === 'Escape') closeUpload(); });
    dialog._abort = () => { if (job) job.abort(); };
    document.body.append(dialog);
    uploadDialog = dialog;
    form.querySelector('input').focus();
  }

  function closeUpload() {
    if (uploadDialog) { uploadDialog._abort(); uploadDialog.remove(); uploadDialog = null; }
  }

  // ---- viewer ------------------------------------------------------------------------------

  function viewerRemoved(clipId) {
    if (viewer && viewer.clips[viewer.index] && viewer.clips[viewer.index].id === clipId) {
      viewer.clips = viewer.clips.filter((c) => c.id !== clipId);
      if (!viewer.clips.length) closeViewer();
      else show(Math.min(viewer.index, viewer.clips.length - 1));
    }
  }

  function openViewer(clips, index) {
    closeViewer();
    const bars = h('div', { class: 'story-bars' });
    const media = h('div', { class: 'story-media' });
    const author = h('a', { class: 'story-author', testid: 'story-author' });
    const when = h('span', { class: 'muted' });
    const caption = h('p', { class: 'story-caption', testid: 'story-caption' });
    const reactions = h('div', { class: 'story-reactions', testid: 'story-reactions', 'aria-live': 'polite' });
    const ownerPanel = h('div', { class: 'story-owner' });
    const reactRow = h('div', { class: 'story-react-row', role: 'group', 'aria-label': 'React' },
      EMOJIS.map((emoji) => h('button', {
        type: 'button', class: 'emoji-btn', testid: 'story-react', dataset: { emoji }, 'aria-label': `React ${emoji}`,
        onclick: () => react(emoji),
      }, emoji)));
    const closeBtn = h('button', { type: 'button', class: 'icon-btn story-close', testid: 'story-close', 'aria-label': 'Close story', onclick: () => closeViewer() }, '✕');
    const prev = h('button', { type: 'button', class: 'story-nav prev', testid: 'story-prev', 'aria-label': 'Previous story', onclick: () => step(-1) }, '‹');
    const next = h('button', { type: 'button', class: 'story-nav next', testid: 'story-next', 'aria-label': 'Next story', onclick: () => step(1) }, '›');
    const panel = h('div', { class: 'story-panel', role: 'dialog', 'aria-modal': 'true', 'aria-label': 'Story', testid: 'story-viewer' },
      bars,
      h('div', { class: 'story-head' }, h('div', { class: 'story-who' }, author, when), closeBtn),
      h('div', { class: 'story-stage' }, media, prev, next),
      caption, reactRow, reactions, ownerPanel);
    const backdrop = h('div', { class: 'modal-backdrop story-backdrop' }, panel);
    backdrop.addEventListener('click', (e) => { if (e.target === backdrop) closeViewer(); });
    const onKey = (e) => {
      if (e.key === 'Escape') closeViewer();
      else if (e.key === 'ArrowRight') step(1);
      else if (e.key === 'ArrowLeft') step(-1);
    };
    document.addEventListener('keydown', onKey);
    document.body.append(backdrop);
    document.body.classList.add('no-scroll');
    viewer = { clips: clips.slice(), index, backdrop, bars, media, author, when, caption, reactions, reactRow, ownerPanel, onKey, timer: null, player: null, closeBtn };
    closeBtn.focus();
    show(index);
  }

  function step(delta) {
    if (!viewer) return;
    const i = viewer.index + delta;
    if (i < 0) return show(0);
    if (i >= viewer.clips.length) return closeViewer();
    show(i);
  }

  function stopMedia() {
    if (!viewer) return;
    clearTimeout(viewer.timer);
    if (viewer.player) { viewer.player.destroy(); viewer.player = null; }
    clear(viewer.media);
  }

  async function show(i) {
    if (!viewer) return;
    stopMedia();
    viewer.index = i;
    if (viewer.clips[i].status === 'processing') {
      // Its URLs change when processing ends: take the current ones.
      await load();
      if (!viewer || viewer.index !== i) return;
      const fresh = all().find((c) => c.id === viewer.clips[i].id);
      if (fresh) viewer.clips[i] = fresh;
    }
    const clip = viewer.clips[i];
    const mine = me && clip.user_id === me.id;
    clear(viewer.bars);
    viewer.clips.forEach((_c, j) => {
      viewer.bars.append(h('span', { class: `story-bar${j < i ? ' done' : ''}${j === i ? ' current' : ''}` }, h('span')));
    });
    const current = viewer.bars.children[i].firstChild;
    viewer.author.textContent = mine ? 'Your story' : (clip.uploaded_by || 'Story');
    viewer.author.href = `#/u/${clip.user_id}`;
    viewer.author.onclick = () => closeViewer();
    viewer.when.textContent = ` · ${ago(clip.created_at)}`;
    viewer.caption.textContent = clip.caption || '';
    viewer.caption.hidden = !clip.caption;
    clear(viewer.reactions);
    clear(viewer.ownerPanel);
    viewer.reactRow.hidden = !!mine; // you do not react to your own story
    viewer.backdrop.dataset.clipId = clip.id;
    viewer.audience = null;

    const advanceAfter = (seconds) => {
      current.style.transition = `width ${seconds}s linear`;
      requestAnimationFrame(() => { current.style.width = '100%'; });
      viewer.timer = setTimeout(() => step(1), seconds * 1000);
    };

    if (clip.status !== 'ready' && clip.kind === 'video') {
      viewer.media.append(h('p', { class: 'story-wait' }, clip.status === 'failed' ? 'This story could not be processed.' : 'Still processing…'));
      advanceAfter(IMAGE_SECONDS);
    } else if (clip.kind === 'video') {
      const video = h('video', { class: 'story-video', testid: 'story-video', playsinline: true, autoplay: true, muted: true, 'aria-label': 'Story video' });
      video.muted = true;
      viewer.media.append(video);
      video.addEventListener('ended', () => step(1));
      video.addEventListener('timeupdate', () => {
        if (video.duration) current.style.width = `${(video.currentTime / video.duration) * 100}%`;
      });
      video.addEventListener('click', () => { video.muted = !video.muted; });
      const src = clip.file_url;
      viewer.player = await attachHls(video, src, { autoplay: true });
      if (!viewer || viewer.clips[viewer.index] !== clip) return;
      viewer.timer = setTimeout(() => step(1), Math.max(10, (clip.duration || 30) + 5) * 1000);
    } else {
      const src = clip.file_url ? mediaUrl(clip.file_url) : clipImage(clip);
      const img = h('img', { class: 'story-image', testid: 'story-image', src, alt: clip.caption || 'Story image' });
      // A clip announced while processing points at its original, which goes once converted.
      img.addEventListener('error', async () => {
        if (img.dataset.retried) return;
        img.dataset.retried = '1';
        await load();
        const fresh = all().find((c) => c.id === clip.id);
        if (fresh && fresh.file_url && fresh.file_url !== clip.file_url && viewer && viewer.clips[viewer.index] === clip) {
          viewer.clips[viewer.index] = fresh;
          img.src = mediaUrl(fresh.file_url);
        }
      });
      viewer.media.append(img);
      advanceAfter(IMAGE_SECONDS);
    }

    if (mine) {
      viewer.ownerPanel.append(h('button', {
        type: 'button', class: 'btn btn-ghost story-delete', testid: 'story-delete',
        onclick: () => deleteClip(clip),
      }, 'Delete story'));
      showAudience(clip);
    } else {
      api.post(`/api/clips/${clip.id}/view`, undefined, { auth: 'required' }).catch(() => {});
    }
  }

  async function deleteClip(clip) {
    try {
      await api.del(`/api/clips/${clip.id}`, { auth: 'required' });
      own = own.filter((c) => c.id !== clip.id);
      draw();
      viewerRemoved(clip.id);
      toast('Story deleted');
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  // Your story's viewers: newest first, a page at a time, and each new one as it arrives.
  function showAudience(clip) {
    const audience = {
      clip,
      views: 0,
      ids: new Set(),
      cursor: null,
      loading: true, // events that arrive meanwhile wait in `early`
      early: [],
      count: h('p', { class: 'story-views', testid: 'story-view-count', 'aria-live': 'polite' }),
      list: h('ul', { class: 'story-viewers', testid: 'story-viewers', 'aria-label': 'Who viewed your story' }),
      more: h('button', {
        type: 'button', class: 'btn btn-ghost story-more', testid: 'story-viewers-more', hidden: true,
        onclick: () => loadViewers(audience, audience.cursor),
      }, 'More viewers'),
    };
    viewer.audience = audience;
    viewer.ownerPanel.append(audience.count, audience.list, audience.more);
    setViews(audience, clip.view_count || 0);
    loadViewers(audience);
  }

  function setViews(audience, n) {
    audience.views = Math.max(audience.views, n); // counts only grow: the larger is newer
    audience.count.textContent = `${audience.views} ${audience.views === 1 ? 'view' : 'views'}`;
    audience.count.dataset.value = String(audience.views);
  }

  function viewerRow(v) {
    return h('li', { testid: 'story-viewer-item', dataset: { userId: v.id } },
      h('a', { href: `#/u/${v.id}`, onclick: () => closeViewer() }, v.display_name || v.username),
      h('span', { class: 'muted' }, ` ${ago(v.viewed_at)}`));
  }

  function addViewer(audience, msg) {
    if (audience.loading) { audience.early.push(msg); return; }
    setViews(audience, msg.view_count);
    if (audience.ids.has(msg.viewer.id)) return;
    audience.ids.add(msg.viewer.id);
    audience.list.prepend(viewerRow({ ...msg.viewer, viewed_at: msg.viewed_at }));
  }

  /** The first page (cursor null: the list starts over) or the page after `cursor`. */
  async function loadViewers(audience, cursor = null) {
    const more = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    if (!cursor) audience.loading = true;
    audience.more.disabled = true;
    try {
      const body = await api.get(`/api/clips/${audience.clip.id}/viewers?limit=${VIEWERS_PAGE}${more}`, { auth: 'required' });
      if (!viewer || viewer.audience !== audience) return;
      if (!cursor) { clear(audience.list); audience.ids.clear(); }
      for (const v of body.viewers || []) {
        if (audience.ids.has(v.id)) continue;
        audience.ids.add(v.id);
        audience.list.append(viewerRow(v));
      }
      audience.cursor = body.next_cursor || null;
      audience.more.hidden = !audience.cursor;
      setViews(audience, body.view_count);
    } catch (err) {
      if (viewer && viewer.audience === audience && !cursor) {
        audience.list.append(h('li', { class: 'muted' }, `Viewers unavailable: ${err.message}`));
      }
    } finally {
      audience.more.disabled = false;
      if (!cursor) {
        audience.loading = false;
        const early = audience.early.splice(0);
        for (const msg of early) addViewer(audience, msg);
      }
    }
  }

  async function react(emoji) {
    if (!viewer) return;
    const clip = viewer.clips[viewer.index];
    try {
      const body = await api.post(`/api/clips/${clip.id}/reactions`, { emoji }, { auth: 'required' });
      if (!viewer || viewer.clips[viewer.index] !== clip) return;
      clear(viewer.reactions).append(...Object.entries(body.reactions || {}).map(([e, n]) =>
        h('span', { class: 'reaction-count', dataset: { emoji: e } }, `${e} ${n}`)));
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  function closeViewer() {
    if (!viewer) return;
    stopMedia();
    document.removeEventListener('keydown', viewer.onKey);
    viewer.backdrop.remove();
    document.body.classList.remove('no-scroll');
    viewer = null;
  }
}

let viewer = null;
let uploadDialog = null;
