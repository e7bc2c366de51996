// The REST client: JSON requests against the API base, tokens in localStorage, one refresh at a
// time (also across tabs: refresh tokens rotate and presenting a used one ends the session).

import { apiUrl } from './config.js';

const STORAGE_KEY = 'reelwire.auth';
const listeners = new Set();

/** An API failure, read from the error envelope {success:false, error:{code,message,field_errors}}. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    const err = (body && body.error) || {};
    const message = err.message || (body && (body.detail || body.message)) || fallback || `Request failed (${status})`;
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = err.code || (status === 0 ? 'NETWORK_ERROR' : `HTTP_${status}`);
    this.fieldErrors = err.field_errors || {};
    this.details = err.details || null;
  }

  /** "message" plus each field error, one line each, for showing to a person. */
  describe() {
    const lines = Object.entries(this.fieldErrors).map(([field, msgs]) => `${field}: ${[].concat(msgs).join(' ')}`);
    return lines.length ? `${this.message}\n${lines.join('\n')}` : this.message;
  }
}

// ---- session -------------------------------------------------------------------------------

function load() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    return null;
  }
}

let session = load(); // {access, refresh, user}

function save(next) {
  session = next;
  if (next) localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else localStorage.removeItem(STORAGE_KEY);
  for (const fn of listeners) fn(session);
}

// Another tab signed in, out, or refreshed.
window.addEventListener('storage', (e) => {
  if (e.key !== STORAGE_KEY) return;
  const before = session && session.user && session.user.id;
  session = load();
  const after = session && session.user && session.user.id;
  if (before !== after) for (const fn of listeners) fn(session);
});

export function currentUser() {
  return session ? session.user : null;
}

export function isSignedIn() {
  return !!(session && session.access);
}

/** Called with the session (or null) whenever someone signs in or out. */
export function onAuthChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function tokenExpiry(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return (payload.exp || 0) * 1000;
  } catch {
    return 0;
  }
}

let refreshing = null;

async function doRefresh(staleAccess) {
  const latest = load();
  // Someone (another tab, another request) already refreshed: use their tokens.
  if (latest && latest.access && latest.access !== staleAccess) {
    session = latest;
    return latest.access;
  }
  if (!latest || !latest.refresh) throw new ApiError(401, null, 'Please sign in again.');
  let res;
  try {
    res = await fetch(apiUrl('/api/auth/refresh'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ refresh_token: latest.refresh }),
    });
  } catch {
    throw new ApiError(0, null, 'Network error: could not reach the server.');
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 || res.status === 400) save(null); // the session is over
    throw new ApiError(res.status, body, 'Your session has ended. Please sign in again.');
  }
  save({ ...latest, access: body.access_token || body.access, refresh: body.refresh_token || body.refresh });
  return session.access;
}

/** A fresh access token (refreshed first if it is about to expire); null when signed out. */
export async function accessToken({ force = false, failed = null } = {}) {
  if (!session || !session.access) return null;
  // A request that failed with `failed` needs a newer token than that one, not a second refresh.
  if (failed && session.access !== failed) return session.access;
  const stale = session.access;
  if (!force && tokenExpiry(stale) - Date.now() > 30_000) return stale;
  if (!refreshing) {
    const run = () => doRefresh(stale);
    const locked = navigator.locks && navigator.locks.request
      ? navigator.locks.request('reelwire-refresh', run)
      : run();
    refreshing = locked.finally(() => { refreshing = null; });
  }
  return refreshing;
}

// ---- requests ------------------------------------------------------------------------------

/**
 * request('GET', '/api/videos', {query, body, form, auth})
 * auth: 'optional' (default: send the token when signed in), 'required', 'none'.
 */
export async function request(method, path, { query, body, form, auth = 'optional', signal } = {}) {
  let url = apiUrl(path);
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') params.set(k, v);
    const qs = params.toString();
    if (qs) url += (url.includes('?') ? '&' : '?') + qs;
  }
  if (auth === 'required' && !isSignedIn()) throw new ApiError(401, null, 'Please sign in first.');

  const send = async (token) => {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (form) payload = form;
    else if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    try {
      return await fetch(url, { method, headers, body: payload, signal });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, null, 'Network error: could not reach the server.');
    }
  };

  let token = auth === 'none' ? null : await accessToken().catch(() => null);
  let res = await send(token);
  if (res.status === 401 && token) {
    // Expired or revoked: refresh once and try again.
    try {
      token = await accessToken({ force: true, failed: token });
    } catch (e) {
      if (auth === 'required') throw e;
      token = null;
    }
    res = await send(token);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });
export const patch = (path, body, opts = {}) => request('PATCH', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

/**
 * Multipart upload with XMLHttpRequest so the bytes sent can be shown:
 * upload('/api/videos', formData, {onProgress(loaded, total)}) -> {promise, abort}
 */
export function upload(path, formData, { onProgress } = {}) {
  let xhr = null;
  let aborted = false;
  const attempt = (token) => new Promise((resolve, reject) => {
    xhr = new XMLHttpRequest();
    xhr.open('POST', apiUrl(path));
    xhr.setRequestHeader('Accept', 'application/json');
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.upload.onprogress = (e) => { if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : 0); };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data));
    };
    xhr.onerror = () => reject(new ApiError(0, null, 'Network error: the upload did not reach the server.'));
    xhr.onabort = () => reject(new ApiError(0, null, 'Upload cancelled.'));
    xhr.send(formData);
  });
  const promise = (async () => {
    const token = await accessToken();
    try {
      return await attempt(token);
    } catch (e) {
      if (aborted || !(e instanceof ApiError) || e.status !== 401) throw e;
      return attempt(await accessToken({ force: true, failed: token }));
    }
  })();
  return { promise, abort() { aborted = true; if (xhr) xhr.abort(); } };
}

// ---- auth ----------------------------------------------------------------------------------

function startSession(body) {
  const tokens = body.tokens || {};
  save({
    access: tokens.access_token || body.access,
    refresh: tokens.refresh_token || body.refresh,
    user: body.user,
  });
  return body.user;
}

export async function register({ username, email, password, display_name }) {
  const body = { username, email, password };
  if (display_name) body.display_name = display_name;
  return startSession(await post('/api/auth/register', body, { auth: 'none' }));
}

export async function login(identifier, password) {
  return startSession(await post('/api/auth/login', { login: identifier, password }, { auth: 'none' }));
}

export async function logout() {
  const refresh = session && session.refresh;
  try {
    if (session) await post('/api/auth/logout', refresh ? { refresh_token: refresh } : undefined, { auth: 'required' });
  } catch {
    // signed out locally either way
  }
  save(null);
}

/** GET /api/auth/me, keeping the stored user current. */
export async function me() {
  const body = await get('/api/auth/me', { auth: 'required' });
  if (session) save({ ...session, user: body.user });
  return body;
}

export function setUser(user) {
  if (session) save({ ...session, user: { ...session.user, ...user } });
}
