// Where the API lives. index.html carries <meta name="reelwire-api" content="">: empty means
// the page's own origin; otherwise an origin such as http://127.0.0.1:8080 (the page may be
// served from a second origin). Every REST, WebSocket and media URL goes through here.

function readBase() {
  const meta = document.querySelector('meta[name="reelwire-api"]');
  const raw = (meta && meta.getAttribute('content') || '').trim();
  if (!raw) return window.location.origin;
  try {
    const url = new URL(raw, window.location.href);
    // Keep a path prefix if one was given (https://host/prefix), without a trailing slash.
    return (url.origin + url.pathname).replace(/\/+$/, '');
  } catch {
    return window.location.origin;
  }
}

export const API_BASE = readBase();

/** An absolute URL for an API path ('/api/videos') or a media URL the API returned. */
export function apiUrl(pathOrUrl) {
  if (pathOrUrl == null || pathOrUrl === '') return '';
  const s = String(pathOrUrl);
  if (/^[a-z][a-z0-9+.-]*:/i.test(s)) return s; // already absolute (https:, blob:, data:)
  if (s.startsWith('//')) return new URL(s, API_BASE).href;
  // API_BASE may carry a path prefix: join rather than resolve so it is kept.
  return API_BASE + (s.startsWith('/') ? s : '/' + s);
}

/** Media URLs returned by the API are opaque: relative ones are on the API origin. */
export const mediaUrl = apiUrl;

/** ws(s)://<api host>/ws?... */
export function wsUrl(path) {
  const url = new URL(apiUrl(path));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}
