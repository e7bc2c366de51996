// Upload: the file goes up as a resumable (tus) upload (a byte progress bar; a dropped
// connection resumes where the server's bytes end), then transcoding progress comes live as
// `processing` events on user:<me>; when ready we go to the player.

import * as api from '../api.js';
import { resumableUpload } from '../resumable.js';
import { realtime } from '../socket.js';
import { h, field, showFormError } from '../ui.js';

function mb(bytes) {
  return `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MB`;
}

export function render(root) {
  const me = api.currentUser();
  let destroyed = false;
  let job = null;
  let videoId = null;
  let pollTimer = null;
  let finished = false;
  const early = new Map();

  const error = h('p', { class: 'form-error', testid: 'upload-error', role: 'alert', hidden: true });
  const fileInput = h('input', { type: 'file', name: 'video_file', accept: 'video/*', required: true, testid: 'upload-file' });
  const titleInput = h('input', { name: 'title', maxlength: 100, testid: 'upload-title', required: true });
  const descInput = h('textarea', { name: 'description', rows: 4, maxlength: 5000, testid: 'upload-description' });
  const visibility = h('select', { name: 'visibility', testid: 'upload-visibility' },
    h('option', { value: 'public' }, 'Public: anyone can find it'),
    h('option', { value: 'unlisted' }, 'Unlisted: anyone with the link'),
    h('option', { value: 'private' }, 'Private: only you'));
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', testid: 'upload-submit' }, 'Upload');

  const upBar = h('progress', { max: 100, value: 0, testid: 'upload-progress', 'aria-label': 'Upload progress' });
  const upText = h('span', { class: 'progress-text', testid: 'upload-progress-text', dataset: { state: 'idle' } }, 'Waiting for a file');
  const txBar = h('progress', { max: 100, value: 0, testid: 'transcode-progress', 'aria-label': 'Processing progress' });
  const txStatus = h('span', { class: 'progress-text', testid: 'transcode-status', dataset: { status: 'idle' } }, 'Not started');
  const txError = h('p', { class: 'form-error', testid: 'transcode-error', role: 'alert', hidden: true });
  const watchLink = h('a', { class: 'btn btn-primary', testid: 'upload-watch-link', hidden: true }, 'Watch now');
  const progressCard = h('section', { class: 'card progress-card', 'aria-label': 'Progress', hidden: true },
    h('div', { class: 'progress-row' }, h('span', { class: 'progress-label' }, '1. Uploading'), upBar, upText),
    h('div', { class: 'progress-row' }, h('span', { class: 'progress-label' }, '2. Processing'), txBar, txStatus),
    txError, watchLink);

  fileInput.addEventListener('change', () => {
    const f = fileInput.files[0];
    if (f && !titleInput.value) titleInput.value = f.name.replace(/\.[^.]+$/, '').slice(0, 100);
  });

  const form = h('form', { id: 'upload-form', class: 'card form', testid: 'upload-form', novalidate: true },
    h('h1', null, 'Upload a video'),
    error,
    field('Video file', fileInput, 'MP4, MOV, WebM… up to 2 GB'),
    field('Title', titleInput),
    field('Description', descInput),
    field('Visibility', visibility),
    submit);

  root.append(h('section', { class: 'upload-page' }, form, progressCard));

  function setTranscode(status, progress, err) {
    if (finished) return;
    txStatus.dataset.status = status;
    if (typeof progress === 'number') txBar.value = Math.max(0, Math.min(100, progress));
    const labels = { pending: 'Waiting for a worker…', processing: 'Processing', ready: 'Ready', failed: 'Failed', uploading: 'Waiting for the upload' };
    txStatus.textContent = `${labels[status] || status}${status === 'processing' ? ` ${Math.round(txBar.value)}%` : ''}`;
    if (status === 'ready') {
      finished = true;
      txBar.value = 100;
      watchLink.hidden = false;
      watchLink.href = `#/watch/${videoId}`;
      clearTimeout(pollTimer);
      setTimeout(() => { if (!destroyed) location.hash = `#/watch/${videoId}`; }, 800);
    } else if (status === 'failed') {
      finished = true;
      txError.hidden = false;
      txError.textContent = err || 'Processing failed.';
      clearTimeout(pollTimer);
      submit.disabled = false;
    }
  }

  // Subscribed before anything is sent, so no progress event is missed.
  const unsubscribe = realtime.subscribe(`user:${me.id}`, {
    onEvent(msg) {
      if (msg.type !== 'processing') return;
      if (videoId && msg.video_id === videoId) setTranscode(msg.status, msg.progress, msg.error);
      else if (!videoId) early.set(msg.video_id, msg); // before the upload's answer arrived
    },
    onReset() { poll(); },
  });

  // A slow safety net in case the socket is down: the status route says the same.
  async function poll() {
    clearTimeout(pollTimer);
    if (destroyed || finished || !videoId) return;
    try {
      const s = await api.get(`/api/videos/${videoId}/status`, { auth: 'required' });
      if (!destroyed && !finished) {
        // Only move forward: a live event may already have shown more.
        if (s.status === 'ready' || s.status === 'failed' || (s.progress || 0) >= txBar.value) setTranscode(s.status, s.progress, s.error);
      }
    } catch { /* try again later */ }
    if (!finished && !destroyed) pollTimer = setTimeout(poll, realtime.state === 'open' ? 5000 : 2000);
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(form, error, null);
    const file = fileInput.files[0];
    if (!file) { showFormError(form, error, { message: 'Choose a video file first.', fieldErrors: { video_file: ['Choose a video file.'] } }); return; }
    if (!titleInput.value.trim()) { showFormError(form, error, { message: 'Give your video a title.', fieldErrors: { title: ['A title is required.'] } }); return; }
    submit.disabled = true;
    finished = false;
    videoId = null;
    progressCard.hidden = false;
    txError.hidden = true;
    watchLink.hidden = true;
    upBar.value = 0;
    txBar.value = 0;
    txStatus.dataset.status = 'idle';
    txStatus.textContent = 'Not started';
    const started = Date.now();
    let offline = false;
    const showBytes = (loaded, t) => {
      upBar.value = t ? Math.round((loaded / t) * 100) : 0;
      const secs = (Date.now() - started) / 1000;
      upText.textContent = `${mb(loaded)} of ${mb(t)} (${upBar.value}%)${secs > 1 ? ` · ${mb(loaded / secs)}/s` : ''}`;
    };
    job = resumableUpload(file, {
      metadata: { title: titleInput.value.trim(), description: descInput.value, visibility: visibility.value },
      onVideoId(id) {
        if (videoId === id) return;
        videoId = id; // the server made the video: its events are ours from now on
        progressCard.dataset.videoId = id;
        const seen = early.get(id);
        early.clear();
        if (seen) setTranscode(seen.status, seen.progress, seen.error);
      },
      onProgress(loaded, total) {
        if (offline) return;
        upText.dataset.state = 'sending';
        showBytes(loaded, total || file.size);
      },
      onConnection(state) {
        offline = state === 'lost';
        upText.dataset.state = offline ? 'offline' : 'resuming';
        upText.textContent = offline ? 'Connection lost: the upload goes on when it is back' : 'Resuming…';
      },
    });
    upText.textContent = `0 of ${mb(file.size)} (0%)`;
    try {
      await job.promise;
      if (destroyed) return;
      upBar.value = 100;
      upText.dataset.state = 'done';
      upText.textContent = `${mb(file.size)} uploaded`;
      if (['idle', 'uploading'].includes(txStatus.dataset.status)) setTranscode('pending', 0);
      pollTimer = setTimeout(poll, 2000);
    } catch (err) {
      if (destroyed) return;
      upText.dataset.state = 'failed';
      upText.textContent = 'Upload failed';
      showFormError(form, error, err);
      if (videoId && err.status >= 400) setTranscode('failed', 0, err.message);
      submit.disabled = false;
    }
  });

  return () => {
    destroyed = true;
    clearTimeout(pollTimer);
    unsubscribe();
    if (job) job.abort(); // an unfinished upload stays resumable: the same file picks it up
  };
}
