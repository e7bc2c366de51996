// Small DOM helpers. Text always goes in as text (never as HTML).

import { mediaUrl } from './config.js';

/**
 * h('button', {class: 'btn', dataset: {testid: 'x'}, onclick: fn}, 'text', child, [children])
 * Attributes starting with "on" become listeners; `testid` is a shortcut for data-testid.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') el.className = value;
      else if (key === 'testid') el.setAttribute('data-testid', value);
      else if (key === 'dataset') Object.assign(el.dataset, value);
      else if (key === 'style' && typeof value === 'object') Object.assign(el.style, value);
      else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
      else if (key === 'value') el.value = value;
      else if (value === true) el.setAttribute(key, '');
      else el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function compact(n) {
  n = Number(n) || 0;
  if (n < 1000) return String(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0).replace(/\.0$/, '')}K`;
  return `${(n / 1_000_000).toFixed(1).replace(/\.0$/, '')}M`;
}

export function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return '';
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  const hh = Math.floor(m / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(m % 60).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export function ago(iso) {
  const t = Date.parse(iso);
  if (!t) return '';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 86400 * 30) return `${Math.round(s / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

export function avatar(user, size = 36) {
  const name = (user && (user.display_name || user.username)) || '?';
  const src = user && user.avatar_url ? mediaUrl(user.avatar_url) : '';
  const el = h('span', { class: 'avatar', style: { width: `${size}px`, height: `${size}px` }, 'aria-hidden': 'true' },
    name.slice(0, 1).toUpperCase());
  if (src) {
    const img = h('img', { src, alt: '', loading: 'lazy' });
    img.addEventListener('error', () => img.remove());
    el.appendChild(img);
  }
  return el;
}

export function profileHref(user) {
  return `#/u/${encodeURIComponent((user && (user.id || user.username)) || '')}`;
}

let toastTimer = null;
export function toast(message, kind = 'info') {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', class: 'toast', role: 'status', 'aria-live': 'polite', testid: 'toast' });
    document.body.appendChild(el);
  }
  el.textContent = message;
  el.dataset.kind = kind;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 4000);
}

/** Show an ApiError on a form: the message in `box`, field errors beside their inputs. */
export function showFormError(form, box, err) {
  for (const old of form.querySelectorAll('.field-error')) old.remove();
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
  if (!err) { box.textContent = ''; box.hidden = true; return; }
  box.hidden = false;
  box.textContent = err.message || String(err);
  const fields = (err && err.fieldErrors) || {};
  const unplaced = [];
  for (const [field, msgs] of Object.entries(fields)) {
    const text = [].concat(msgs).join(' ');
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      const note = h('p', { class: 'field-error', testid: `field-error-${field}`, id: `err-${form.id}-${field}` }, text);
      input.setAttribute('aria-describedby', note.id);
      (input.closest('label') || input).after(note);
    } else unplaced.push(`${field}: ${text}`);
  }
  if (unplaced.length) box.textContent += ` (${unplaced.join('; ')})`;
}

export function field(labelText, input, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, labelText), input,
    hint ? h('span', { class: 'field-hint' }, hint) : null);
}

export function isUuid(s) {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s || '');
}

/** A small inline SVG icon (no icon fonts, nothing fetched). */
const ICONS = {
  like: 'M2 10h4v11H2zM8 21h9.2a2 2 0 0 0 2-1.6l1.6-7.4A2 2 0 0 0 18.8 9.6H14l.8-4.2a1.6 1.6 0 0 0-2.8-1.3L8 9z',
  dislike: 'M2 3h4v11H2zM8 3h9.2a2 2 0 0 1 2 1.6l1.6 7.4a2 2 0 0 1-2 2.4H14l.8 4.2a1.6 1.6 0 0 1-2.8 1.3L8 15z',
};
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '18');
  svg.setAttribute('height', '18');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name]);
  path.setAttribute('fill', 'currentColor');
  svg.appendChild(path);
  return svg;
}

export function plural(n, one, many) {
  return Number(n) === 1 ? one : many;
}
