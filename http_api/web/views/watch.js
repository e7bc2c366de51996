// Watch: the player with a quality menu, live counters, like/dislike, and live comments with
// one level of replies. Everything live comes from `video:<id>` on /ws; after a dropped
// connection the channel is resubscribed with `since` and missed comments are replayed (or the
// list is reloaded when the server cannot replay them).

import * as api from '../api.js';
import { attachHls } from '../player.js';
import { realtime } from '../socket.js';
import { h, clear, compact, ago, avatar, profileHref, showFormError, toast, icon, plural } from '../ui.js';

export function render(root, { params }) {
  const videoId = params[0];
  const me = api.currentUser();
  let destroyed = false;
  let video = null;
  let player = null;
  let viewSent = false;
  let version = -1;
  const counts = { view_count: 0, like_count: 0, dislike_count: 0, comment_count: 0, viewer_count: 0 };
  let reaction = 'none';
  let commentList;
  let moreBtn;
  let nextCursor = null;
  const nodes = new Map(); // comment id -> {li, data, content, actions, replies, repliesLoaded}

  const page = h('section', { class: 'watch', testid: 'watch-page', dataset: { videoId } });
  root.append(page);

  // ---- layout --------------------------------------------------------------------------------
  const videoEl = h('video', { class: 'player', testid: 'video-player', controls: true, playsinline: true, preload: 'metadata', 'aria-label': 'Video player' });
  const playerStatus = h('div', { class: 'player-status', testid: 'player-status', role: 'status' });
  const qualityMenu = h('select', { class: 'quality', testid: 'quality-menu', 'aria-label': 'Quality', disabled: true },
    h('option', { value: '-1', testid: 'quality-option' }, 'Auto'));
  const qualityCurrent = h('span', { class: 'quality-current muted', testid: 'quality-current' });
  const title = h('h1', { class: 'watch-title', testid: 'video-title' });
  const description = h('p', { class: 'watch-description', testid: 'video-description' });
  const authorBox = h('div', { class: 'watch-author', testid: 'video-author' });
  const counter = (key, label) => h('span', { class: 'stat', testid: key.replace('_', '-') }, '0');
  const viewEl = counter('view_count');
  const viewerEl = counter('viewer_count');
  const likeEl = counter('like_count');
  const dislikeEl = counter('dislike_count');
  const commentCountEl = counter('comment_count');
  const likeBtn = h('button', { type: 'button', class: 'pill-btn', testid: 'like-button', 'aria-pressed': 'false', 'aria-label': 'Like' }, icon('like'), likeEl);
  const dislikeBtn = h('button', { type: 'button', class: 'pill-btn', testid: 'dislike-button', 'aria-pressed': 'false', 'aria-label': 'Dislike' }, icon('dislike'), dislikeEl);
  const viewsWord = h('span', null, ' views');
  const commentsWord = h('span', null, ' comments');
  const processing = h('div', { class: 'processing', testid: 'processing-status', hidden: true });

  const stage = h('div', { class: 'player-wrap' }, videoEl, playerStatus);
  page.append(
    h('div', { class: 'watch-main' },
      stage,
      processing,
      h('div', { class: 'player-bar' },
        h('label', { class: 'quality-label' }, h('span', null, 'Quality '), qualityMenu), qualityCurrent),
      title,
      h('div', { class: 'watch-stats' },
        h('span', { class: 'muted' }, viewEl, viewsWord),
        h('span', { class: 'live-dot', title: 'Watching now' }, viewerEl, ' watching'),
        h('span', { class: 'spacer' }),
        likeBtn, dislikeBtn),
      authorBox,
      description),
    commentsSection());

  // ---- counters ------------------------------------------------------------------------------
  function paintCounts() {
    viewEl.textContent = compact(counts.view_count);
    viewEl.dataset.value = String(counts.view_count);
    viewerEl.textContent = String(counts.viewer_count);
    viewerEl.dataset.value = String(counts.viewer_count);
    likeEl.textContent = compact(counts.like_count);
    likeEl.dataset.value = String(counts.like_count);
    dislikeEl.textContent = compact(counts.dislike_count);
    dislikeEl.dataset.value = String(counts.dislike_count);
    commentCountEl.textContent = String(counts.comment_count);
    commentCountEl.dataset.value = String(counts.comment_count);
    viewsWord.textContent = plural(counts.view_count, ' view', ' views');
    commentsWord.textContent = plural(counts.comment_count, ' comment', ' comments');
    likeBtn.setAttribute('aria-pressed', reaction === 'liked' ? 'true' : 'false');
    dislikeBtn.setAttribute('aria-pressed', reaction === 'disliked' ? 'true' : 'false');
  }

  /** Merge absolute counters: versioned ones only forward, views only grow. */
  function mergeCounts(data, { force = false } = {}) {
    if (!data) return;
    const v = data.counts_version;
    if (force || (typeof v === 'number' && v > version)) {
      if (typeof v === 'number') version = v;
      for (const k of ['like_count', 'dislike_count', 'comment_count']) if (typeof data[k] === 'number') counts[k] = data[k];
    }
    if (typeof data.view_count === 'number') counts.view_count = Math.max(counts.view_count, data.view_count);
    if (typeof data.viewer_count === 'number') counts.viewer_count = data.viewer_count;
    paintCounts();
  }

  // ---- video ---------------------------------------------------------------------------------
  async function loadVideo() {
    try {
      const v = await api.get(`/api/videos/${videoId}`);
      if (destroyed) return;
      video = v;
      document.title = `${v.title || 'Video'} · Reelwire`;
      title.textContent = v.title || 'Untitled';
      description.textContent = v.description || '';
      const a = v.author || {};
      clear(authorBox).append(
        h('a', { href: profileHref(a), class: 'author-link' }, avatar(a, 40),
          h('span', null, h('strong', null, a.display_name || a.username || ''), h('span', { class: 'muted' }, ` @${a.username || ''}`))),
        h('span', { class: 'muted' }, ` · ${ago(v.published_at || v.created_at)}`));
      reaction = v.user_reaction || 'none';
      version = -1;
      mergeCounts({ ...v, counts_version: v.counts_version ?? 0 }, { force: true });
      const [w, ht] = (v.resolution || '').split('x').map(Number);
      page.classList.toggle('portrait', ht > w);
      showStatus(v.status, v.progress, v.error);
      if (v.status === 'ready' || v.playable) startPlayer();
    } catch (err) {
      if (destroyed) return;
      if (video) { toast(`Could not refresh the video: ${err.message}`, 'error'); return; }
      destroyed = true; // nothing more to show or update here
      unsubscribe();
      clear(page).append(h('div', { class: 'empty', testid: 'page-error' },
        h('h1', null, err.status === 404 ? 'Video not found' : 'Could not load this video'),
        err.status === 404 ? null : h('p', { class: 'muted' }, err.message), h('a', { href: '#/' }, 'Back to home')));
    }
  }

  function showStatus(status, progress, error) {
    if (status === 'ready') { processing.hidden = true; return; }
    processing.hidden = false;
    processing.dataset.status = status;
    processing.dataset.playable = String(!!(video && video.playable));
    const done = typeof progress === 'number' && progress > 0 ? ` (${Math.round(progress)}%)` : '';
    if (status === 'failed') processing.textContent = `Processing failed: ${error || 'unknown error'}`;
    else if (video && video.playable) processing.textContent = `Still being transcoded${done}: you are watching what is ready, and the rest follows.`;
    else processing.textContent = `This video is ${status}${done}${error ? ` (${error})` : ''}. It will play here as soon as its first seconds are ready.`;
  }

  function stopPlayer() {
    if (player) { player.destroy(); player = null; }
    clear(qualityMenu);
  }

  // `playable` (the first seconds of every quality are up) or its withdrawal (the transcode
  // failed half-way): fetch the video again, for URLs signed for us where they need to be.
  function onPlayable(msg) {
    if (!video || msg.video_id !== videoId) return;
    if (msg.playable) { if (!player) loadVideo(); return; }
    video.playable = false;
    stopPlayer();
    showStatus(video.status, video.progress, video.error);
  }

  let starting = false; // one player at a time, however many events ask for it
  async function startPlayer() {
    if (player || starting || !video) return;
    const src = video.playback_url || video.hls_playlist || video.video_url;
    if (!src) { playerStatus.textContent = 'No playable stream.'; return; }
    playerStatus.textContent = '';
    starting = true;
    try {
      // Still transcoding: the playlists grow, and playback starts at the beginning.
      player = await attachHls(videoEl, src, { variants: video.quality_variants || {}, growing: video.status !== 'ready' });
    } finally { starting = false; }
    if (destroyed) { player.destroy(); return; }
    page.dataset.engine = player.engine;
    player.onLevels((levels) => {
      clear(qualityMenu);
      for (const lvl of levels) qualityMenu.append(h('option', { value: String(lvl.index), testid: 'quality-option' }, lvl.label));
      qualityMenu.disabled = levels.length <= 1 && player.engine !== 'hls.js';
      qualityMenu.value = String(player.current);
    });
    player.onLevelSwitch(({ auto, level }) => {
      const found = player.levels.find((l) => l.index === level);
      qualityCurrent.textContent = found ? (auto ? `Auto (${found.label})` : found.label) : (auto ? 'Auto' : '');
      qualityCurrent.dataset.level = String(level);
    });
    player.onError((e) => { playerStatus.textContent = `Playback error: ${e.details || 'unknown'}`; });
  }

  qualityMenu.addEventListener('change', () => { if (player) player.setLevel(Number(qualityMenu.value)); });

  videoEl.addEventListener('play', async () => {
    if (viewSent) return;
    viewSent = true;
    const quality = qualityCurrent.textContent.replace(/^Auto \(|\)$/g, '') || undefined;
    try {
      let data;
      if (realtime.state === 'open') {
        try { data = await realtime.request({ type: 'view', video_id: videoId, ...(quality ? { quality } : {}) }); } catch { data = null; }
      }
      if (!data) data = await api.post(`/api/videos/${videoId}/view`, quality ? { quality } : undefined);
      if (data && typeof data.new_view_count === 'number') mergeCounts({ view_count: data.new_view_count });
    } catch (err) {
      console.warn('view not counted', err);
    }
  });

  async function react(action) {
    if (!api.isSignedIn()) { location.hash = `#/login?next=${encodeURIComponent(`/watch/${videoId}`)}`; return; }
    const next = reaction === (action === 'like' ? 'liked' : 'disliked') ? 'remove' : action;
    likeBtn.disabled = dislikeBtn.disabled = true;
    try {
      const body = await api.post(`/api/videos/${videoId}/like`, { action: next }, { auth: 'required' });
      reaction = body.user_action || 'none';
      // The absolute counts from the answer; the versioned video_update that follows agrees.
      counts.like_count = body.like_count;
      counts.dislike_count = body.dislike_count;
      paintCounts();
    } catch (err) {
      toast(err.message, 'error');
    } finally {
      likeBtn.disabled = dislikeBtn.disabled = false;
    }
  }
  likeBtn.addEventListener('click', () => react('like'));
  dislikeBtn.addEventListener('click', () => react('dislike'));

  // ---- comments ------------------------------------------------------------------------------

  function commentsSection() {
    const error = h('p', { class: 'form-error', testid: 'comment-error', role: 'alert', hidden: true });
    const input = h('textarea', { name: 'content', rows: 2, maxlength: 1000, testid: 'comment-input', placeholder: 'Add a comment…', 'aria-label': 'Add a comment' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'comment-submit' }, 'Comment');
    const form = h('form', { id: 'comment-form', class: 'comment-form', testid: 'comment-form' }, error, input, h('div', { class: 'row end' }, submit));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!api.isSignedIn()) { location.hash = `#/login?next=${encodeURIComponent(`/watch/${videoId}`)}`; return; }
      const content = input.value.trim();
      if (!content) return;
      submit.disabled = true;
      showFormError(form, error, null);
      try {
        const c = await api.post(`/api/videos/${videoId}/comments`, { content }, { auth: 'required' });
        input.value = '';
        addComment(c.comment || c, { prepend: true });
      } catch (err) {
        showFormError(form, error, err);
      } finally {
        submit.disabled = false;
      }
    });
    commentList = h('ul', { class: 'comment-list', testid: 'comment-list', 'aria-live': 'polite' });
    moreBtn = h('button', { type: 'button', class: 'btn btn-ghost', testid: 'comments-more', hidden: true, onclick: () => loadComments(false) }, 'More comments');
    const signInNote = me ? null : h('p', { class: 'muted' }, h('a', { href: `#/login?next=${encodeURIComponent(`/watch/${videoId}`)}` }, 'Sign in'), ' to comment.');
    return h('aside', { class: 'comments', 'aria-label': 'Comments' },
      h('h2', null, commentCountEl, commentsWord),
      signInNote || form,
      commentList, moreBtn);
  }

  function commentNode(c) {
    const a = c.author || {};
    const content = h('p', { class: 'comment-content', testid: 'comment-content' }, c.content);
    const actions = h('div', { class: 'comment-actions' });
    const li = h('li', { class: 'comment', testid: 'comment-item', dataset: { commentId: c.id, parentId: c.parent_comment_id || '' } },
      avatar(a, 32),
      h('div', { class: 'comment-body' },
        h('div', { class: 'comment-head' },
          h('a', { href: profileHref(a), class: 'comment-author', testid: 'comment-author' }, a.display_name || a.username || 'someone'),
          h('span', { class: 'muted' }, ` ${ago(c.created_at)}${c.edited ? ' (edited)' : ''}`)),
        content, actions));
    const node = { li, data: c, content, actions, replies: null, repliesLoaded: false, toggle: null };
    drawActions(node);
    return node;
  }

  function drawActions(node) {
    const c = node.data;
    clear(node.actions);
    if (!c.parent_comment_id) {
      if (me) node.actions.append(h('button', { type: 'button', class: 'link-btn', testid: 'reply-button', onclick: () => openReply(node) }, 'Reply'));
      const n = c.reply_count || 0;
      if (n > 0) {
        node.toggle = h('button', { type: 'button', class: 'link-btn', testid: 'replies-toggle', 'aria-expanded': node.replies && !node.replies.hidden ? 'true' : 'false', onclick: () => toggleReplies(node) },
          node.replies && !node.replies.hidden ? 'Hide replies' : `${n} ${n === 1 ? 'reply' : 'replies'}`);
        node.actions.append(node.toggle);
      }
    }
    const canDelete = me && (c.user_id === me.id || (video && video.author && video.author.id === me.id) || me.role === 'admin');
    if (canDelete) {
      node.actions.append(h('button', { type: 'button', class: 'link-btn danger', testid: 'comment-delete', onclick: () => removeComment(node) }, 'Delete'));
    }
  }

  async function removeComment(node) {
    try {
      await api.del(`/api/comments/${node.data.id}`, { auth: 'required' });
      dropComment(node.data.id, node.data.parent_comment_id);
    } catch (err) {
      toast(err.message, 'error');
    }
  }

  function openReply(node) {
    const existing = node.li.querySelector('.reply-form');
    if (existing) { existing.querySelector('textarea').focus(); return; }
    const input = h('textarea', { rows: 2, maxlength: 1000, testid: 'reply-input', 'aria-label': 'Write a reply', placeholder: 'Write a reply…' });
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const form = h('form', { class: 'reply-form', testid: 'reply-form' }, error, input,
      h('div', { class: 'row end' },
        h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => form.remove() }, 'Cancel'),
        h('button', { type: 'submit', class: 'btn btn-primary', testid: 'reply-submit' }, 'Reply')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const content = input.value.trim();
      if (!content) return;
      showFormError(form, error, null);
      try {
        const c = await api.post(`/api/videos/${videoId}/comments`, { content, parent_comment_id: node.data.id }, { auth: 'required' });
        form.remove();
        await ensureReplies(node);
        addComment(c.comment || c);
      } catch (err) {
        showFormError(form, error, err);
      }
    });
    node.li.querySelector('.comment-body').append(form);
    input.focus();
  }

  async function ensureReplies(node) {
    if (!node.replies) {
      node.replies = h('ul', { class: 'reply-list', testid: 'reply-list' });
      node.li.querySelector('.comment-body').append(node.replies);
    }
    node.replies.hidden = false;
    if (!node.repliesLoaded) {
      node.repliesLoaded = true;
      try {
        let cursor = null;
        for (let i = 0; i < 10; i += 1) {
          const body = await api.get(`/api/comments/${node.data.id}/replies`, { query: { limit: 50, cursor } });
          for (const r of body.replies || []) addComment(r, { quiet: true });
          cursor = body.next_cursor;
          if (!cursor) break;
        }
      } catch (err) {
        node.repliesLoaded = false;
        toast(`Could not load replies: ${err.message}`, 'error');
      }
    }
    drawActions(node);
  }

  function toggleReplies(node) {
    if (node.replies && !node.replies.hidden) { node.replies.hidden = true; drawActions(node); return; }
    ensureReplies(node);
  }

  /** Insert a comment (or reply) once; replies go under their thread when it is open. */
  function addComment(c, { prepend = false, quiet = false } = {}) {
    if (!c || !c.id) return;
    if (nodes.has(c.id)) { updateComment(c); return; }
    if (c.parent_comment_id) {
      const parent = nodes.get(c.parent_comment_id);
      if (!parent) return; // its thread is not on screen
      if (!quiet) {
        parent.data.reply_count = Math.max((parent.data.reply_count || 0), countReplies(parent) + 1);
      }
      if (parent.replies && parent.repliesLoaded) {
        const node = commentNode(c);
        nodes.set(c.id, node);
        parent.replies.append(node.li);
      }
      drawActions(parent);
      return;
    }
    const node = commentNode(c);
    nodes.set(c.id, node);
    if (prepend) commentList.prepend(node.li);
    else commentList.append(node.li);
  }

  function countReplies(parent) {
    return parent.replies ? parent.replies.children.length : 0;
  }

  function updateComment(c) {
    const node = nodes.get(c.id);
    if (!node) return;
    node.data = { ...node.data, ...c };
    node.content.textContent = node.data.content;
    drawActions(node);
  }

  function dropComment(id, parentId) {
    const node = nodes.get(id);
    if (node) {
      node.li.remove();
      nodes.delete(id);
      // its replies go with it
      for (const [cid, n] of nodes) if (n.data.parent_comment_id === id) nodes.delete(cid);
    }
    if (parentId) {
      const parent = nodes.get(parentId);
      if (parent) {
        parent.data.reply_count = Math.max(0, (parent.data.reply_count || 1) - 1);
        drawActions(parent);
      }
    }
  }

  async function loadComments(reset) {
    try {
      const query = { limit: 20, sort: 'newest' };
      if (!reset && nextCursor) query.cursor = nextCursor;
      const body = await api.get(`/api/videos/${videoId}/comments`, { query });
      if (destroyed) return;
      if (reset) {
        // Keep what is on screen (and its open threads), add what is missing, drop what went.
        const ids = new Set((body.comments || []).map((c) => c.id));
        const firstPage = body.comments || [];
        for (const [id, n] of [...nodes]) {
          if (!n.data.parent_comment_id && !ids.has(id) && firstPage.length && Date.parse(n.data.created_at) >= Date.parse(firstPage[firstPage.length - 1].created_at)) {
            dropComment(id, null);
          }
        }
        for (const c of [...firstPage].reverse()) {
          if (nodes.has(c.id)) updateComment(c);
          else {
            // place newer ones at the top in order
            addComment(c, { prepend: true });
          }
        }
        sortTopLevel();
        if (nextCursor === null) nextCursor = body.next_cursor || null;
      } else {
        for (const c of body.comments || []) addComment(c);
        nextCursor = body.next_cursor || null;
      }
      moreBtn.hidden = !nextCursor;
      for (const n of nodes.values()) if (n.repliesLoaded && reset) { n.repliesLoaded = false; if (n.replies && !n.replies.hidden) ensureReplies(n); }
    } catch (err) {
      if (!destroyed) toast(`Could not load comments: ${err.message}`, 'error');
    }
  }

  function sortTopLevel() {
    const items = [...commentList.children];
    items.sort((a, b) => {
      const da = nodes.get(a.dataset.commentId);
      const db = nodes.get(b.dataset.commentId);
      return Date.parse(db ? db.data.created_at : 0) - Date.parse(da ? da.data.created_at : 0);
    });
    for (const li of items) commentList.append(li);
  }

  // ---- realtime ------------------------------------------------------------------------------
  let subscribedOnce = false;
  const unsubscribe = realtime.subscribe(`video:${videoId}`, {
    onEvent(msg) {
      switch (msg.type) {
        case 'video_update':
          mergeCounts(msg.data || {});
          break;
        case 'viewer_count':
          mergeCounts({ viewer_count: msg.viewer_count ?? (msg.data && msg.data.viewer_count) });
          break;
        case 'new_comment':
          addComment(msg.comment, { prepend: true });
          break;
        case 'comment_updated':
          updateComment(msg.comment);
          break;
        case 'comment_deleted':
          dropComment(msg.comment_id, msg.parent_comment_id);
          break;
        case 'processing':
          if (video && msg.status !== video.status) {
            video.status = msg.status;
            showStatus(msg.status, msg.progress, msg.error);
            if (msg.status === 'ready') { loadVideo(); }
          }
          break;
        case 'playable':
          onPlayable(msg);
          break;
        default:
      }
    },
    onSubscribed() {
      // Events between the first REST load and the subscription: merge the newest page, and
      // read the video again if it may have become playable (or ready) meanwhile.
      if (!subscribedOnce) {
        subscribedOnce = true;
        loadComments(true);
        if (video && !player && video.status !== 'failed') loadVideo();
      }
    },
    onReset() {
      // The server could not replay what we missed: reload over REST.
      loadVideo();
      loadComments(true);
    },
    onGone() {
      // Made private or deleted while we watched: the server took this socket off its channel.
      gone();
    },
  });

  function gone() {
    if (destroyed) return;
    destroyed = true;
    unsubscribe();
    if (ownerChannel) ownerChannel();
    stopPlayer();
    clear(page).append(h('div', { class: 'empty', testid: 'page-error' },
      h('h1', null, 'This video is no longer available'),
      h('p', { class: 'muted' }, 'Its owner made it private or deleted it while you were watching.'),
      h('a', { href: '#/' }, 'Back to home')));
  }

  let ownerChannel = null;
  if (me) {
    // The owner also gets progress while it processes.
    ownerChannel = realtime.subscribe(`user:${me.id}`, {
      onEvent(msg) {
        if (msg.type === 'processing' && msg.video_id === videoId && video && video.status !== 'ready') {
          showStatus(msg.status, msg.progress, msg.error);
          if (msg.status === 'ready') loadVideo();
        }
        if (msg.type === 'playable') onPlayable(msg);
      },
    });
  }

  loadVideo();
  loadComments(false);

  return () => {
    destroyed = true;
    unsubscribe();
    if (ownerChannel) ownerChannel();
    if (player) player.destroy();
    document.title = 'Reelwire';
  };
}
