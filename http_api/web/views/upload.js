// Upload: the file goes up with XMLHttpRequest (a byte progress bar), then transcoding
// progress comes live as `processing` events on user:<me>; when ready we go to the player.

import * as api from '../api.js';
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
  const upText = h('span', { class: 'progress-text', testid: 'upload-progress-text' }, 'Waiting for a file');
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
    const labels = { pending: 'Waiting for a worker…', processing: 'Processing', ready: 'Ready', failed: 'Failed', uploading: 'Uploading' };
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
    const fd = new FormData();
    fd.append('title', titleInput.value.trim());
    fd.append('description', descInput.value);
    fd.append('visibility', visibility.value);
    fd.append('video_file', file, file.name);
    const started = Date.now();
    job = api.upload('/api/videos', fd, {
      onProgress(loaded, total) {
        const t = total || file.size;
        upBar.value = t ? Math.round((loaded / t) * 100) : 0;
        const secs = (Date.now() - started) / 1000;
        upText.textContent = `${mb(loaded)} of ${mb(t)} (${upBar.value}%)${secs > 1 ? ` · ${mb(loaded / secs)}/s` : ''}`;
      },
    });
    upText.textContent = `0 of ${mb(file.size)} (0%)`;
    try {
      const body = await job.promise;
      if (destroyed) return;
      videoId = body.id;
      progressCard.dataset.videoId = videoId;
      upBar.value = 100;
      upText.textContent = `${mb(file.size)} uploaded`;
      setTranscode(body.status || 'pending', 0);
      const seen = early.get(videoId);
      early.clear();
      if (seen) setTranscode(seen.status, seen.progress, seen.error);
      pollTimer = setTimeout(poll, 2000);
    } catch (err) {
      if (destroyed) return;
      upText.textContent = 'Upload failed';
      showFormError(form, error, err);
      submit.disabled = false;
    }
  });

  return () => {
    destroyed = true;
    clearTimeout(pollTimer);
    unsubscribe();
    if (job && !videoId) job.abort();
  };
}
