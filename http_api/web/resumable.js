// Resumable uploads (tus) with the vendored tus-js-client, loaded once as a classic script (it
// sets window.tus; same origin as this module, so the strict CSP allows it). A dropped
// connection costs at most the bytes that were in flight: the server keeps what arrived, and
// the upload goes on from there when the network is back (also after a reload: the same file
// picks up its unfinished upload).

import { apiUrl } from './config.js';
import { ApiError, accessToken } from './api.js';

const CHUNK_SIZE = 8 * 1024 * 1024;
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000];
const MAX_RESTARTS = 30; // each after the retries above ran out, when the network is back

let loading = null;

function loadTus() {
  if (window.tus) return Promise.resolve(window.tus);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement('script');
      script.src = new URL('./vendor/tus/tus.min.js', import.meta.url).href;
      script.onload = () => resolve(window.tus);
      script.onerror = () => {
        loading = null;
        reject(new ApiError(0, null, 'Could not load the upload client.'));
      };
      document.head.append(script);
    });
  }
  return loading;
}

function statusOf(err) {
  return err && err.originalResponse ? err.originalResponse.getStatus() : 0;
}

/** The failure as an ApiError: the server's envelope when it answered, else a network error. */
function apiErrorOf(err) {
  const cause = (err && err.causingError) || err;
  if (cause instanceof ApiError) return cause;
  const res = err && err.originalResponse;
  if (!res) return new ApiError(0, null, 'Network error: the upload did not reach the server.');
  let body = null;
  try { body = JSON.parse(res.getBody()); } catch { body = null; }
  return new ApiError(res.getStatus(), body);
}

function networkBack() {
  return new Promise((resolve) => {
    if (navigator.onLine) setTimeout(resolve, 2000);
    else window.addEventListener('online', () => resolve(), { once: true });
  });
}

/**
 * Upload `file` to /api/uploads/. `metadata`: title, description, visibility (or kind: 'clip'
 * and caption). Callbacks: onProgress(sent, total), onVideoId(id) (as soon as the server made
 * the video), onConnection('lost' | 'resuming') when requests start failing for want of a
 * network and when the server answers again. Returns {promise, abort()}; abort() keeps the
 * upload resumable.
 */
export function resumableUpload(file, { metadata = {}, onProgress, onVideoId, onConnection } = {}) {
  let upload = null;
  let aborted = false;
  let restarts = 0;
  let failedToken = null;
  let lost = false;
  const connection = (state) => {
    lost = state === 'lost';
    if (onConnection) onConnection(state);
  };
  const promise = loadTus().then((tus) => new Promise((resolve, reject) => {
    upload = new tus.Upload(file, {
      endpoint: apiUrl('/api/uploads/'),
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name, filetype: file.type || '', ...metadata },
      removeFingerprintOnSuccess: true,
      async onBeforeRequest(req) {
        const token = await accessToken(failedToken ? { force: true, failed: failedToken } : {});
        failedToken = null;
        if (token) req.setHeader('Authorization', `Bearer ${token}`);
      },
      onAfterResponse(req, res) {
        if (lost) connection('resuming');
        const id = res.getHeader('Reelwire-Video-Id');
        if (id && onVideoId) onVideoId(id);
        if (res.getStatus() === 401) failedToken = (req.getHeader('Authorization') || '').slice(7);
      },
      // tus-js-client gives up while the browser says it is offline; here the bytes wait.
      onShouldRetry(err) {
        const status = statusOf(err);
        if (status === 0 && !lost) connection('lost');
        return status === 0 || status >= 500 || [401, 409, 423].includes(status);
      },
      onProgress(sent, total) {
        if (onProgress) onProgress(sent, total);
      },
      onSuccess() { resolve(); },
      onError(err) {
        const cause = (err && err.causingError) || err;
        const network = statusOf(err) === 0 && !(cause instanceof ApiError);
        if (aborted || !network || restarts >= MAX_RESTARTS) {
          reject(apiErrorOf(err));
          return;
        }
        restarts += 1;
        if (!lost) connection('lost');
        networkBack().then(() => {
          if (!aborted) upload.start(); // asks the server where it stands, goes on from there
        });
      },
    });
    upload.findPreviousUploads().then((previous) => {
      if (previous.length) upload.resumeFromPreviousUpload(previous[0]);
      if (!aborted) upload.start();
    }, () => { if (!aborted) upload.start(); });
  }));
  return {
    promise,
    abort() {
      aborted = true;
      if (upload) upload.abort();
    },
  };
}
