// Storyboard scrubbing: a WebVTT index whose cues point at tiles of one sprite image
// (`storyboard.jpg#xywh=x,y,w,h`); the tile under the pointer is shown with background-position.

import { mediaUrl } from './config.js';

const cache = new Map(); // vtt url -> Promise<{tiles, image, width, height}>

function parseTime(t) {
  const parts = t.trim().split(':').map(Number);
  while (parts.length < 3) parts.unshift(0);
  return parts[0] * 3600 + parts[1] * 60 + parts[2];
}

export function parseVtt(text, vttUrl, fallbackImage) {
  const tiles = [];
  const blocks = text.replace(/\r/g, '').split(/\n\n+/);
  for (const block of blocks) {
    const lines = block.split('\n').filter(Boolean);
    const timing = lines.findIndex((l) => l.includes('-->'));
    if (timing < 0 || !lines[timing + 1]) continue;
    const [from, to] = lines[timing].split('-->').map((s) => parseTime(s.split(' ').filter(Boolean)[0] || s));
    const target = lines[timing + 1].trim();
    const m = target.match(/^(.*?)#xywh=(\d+),(\d+),(\d+),(\d+)/);
    if (!m) continue;
    let image = fallbackImage;
    try { image = m[1] ? new URL(m[1], vttUrl).href : fallbackImage; } catch { /* keep fallback */ }
    tiles.push({ from, to, image, x: +m[2], y: +m[3], w: +m[4], h: +m[5] });
  }
  return tiles;
}

function loadImageSize(src) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve(null);
    img.src = src;
  });
}

export function loadStoryboard(storyboard) {
  if (!storyboard || !storyboard.vtt) return Promise.resolve(null);
  const vttUrl = mediaUrl(storyboard.vtt);
  if (!cache.has(vttUrl)) {
    const imageUrl = storyboard.image ? mediaUrl(storyboard.image) : '';
    cache.set(vttUrl, (async () => {
      const res = await fetch(vttUrl);
      if (!res.ok) throw new Error(`storyboard ${res.status}`);
      const tiles = parseVtt(await res.text(), vttUrl, imageUrl);
      if (!tiles.length) return null;
      const size = await loadImageSize(tiles[0].image);
      if (!size) return null;
      return { tiles, ...size };
    })().catch(() => null));
  }
  return cache.get(vttUrl);
}

/** Show tile `index` of `board` inside `el` (sized to fit `box`, centred). */
export function showTile(el, board, index, box) {
  const tile = board.tiles[Math.max(0, Math.min(board.tiles.length - 1, index))];
  const scale = Math.min(box.width / tile.w, box.height / tile.h);
  const w = tile.w * scale;
  const hgt = tile.h * scale;
  el.style.backgroundImage = `url("${tile.image.replace(/"/g, '%22')}")`;
  el.style.backgroundSize = `${board.width * scale}px ${board.height * scale}px`;
  el.style.backgroundPosition = `${-tile.x * scale}px ${-tile.y * scale}px`;
  el.style.width = `${w}px`;
  el.style.height = `${hgt}px`;
  el.style.left = `${(box.width - w) / 2}px`;
  el.style.top = `${(box.height - hgt) / 2}px`;
  el.dataset.tile = String(board.tiles.indexOf(tile));
}

/** Hover / touch-move scrubbing (and a slow animation while hovering still) on a thumbnail. */
export function attachScrub(container, storyboard) {
  if (!storyboard || !storyboard.vtt) return;
  let board = null;
  let overlay = null;
  let timer = null;
  let index = 0;
  let lastMove = 0;
  const ensure = async () => {
    if (board) return board;
    board = await loadStoryboard(storyboard);
    return board;
  };
  const show = (i) => {
    if (!board) return;
    if (!overlay) {
      overlay = document.createElement('div');
      overlay.className = 'storyboard';
      overlay.setAttribute('data-testid', 'storyboard-preview');
      overlay.setAttribute('aria-hidden', 'true');
      container.appendChild(overlay);
    }
    index = i;
    container.classList.add('scrubbing');
    showTile(overlay, board, i, container.getBoundingClientRect());
  };
  const at = (clientX) => {
    const r = container.getBoundingClientRect();
    const frac = Math.max(0, Math.min(0.999, (clientX - r.left) / r.width));
    return Math.floor(frac * board.tiles.length);
  };
  const stop = () => {
    clearInterval(timer);
    timer = null;
    container.classList.remove('scrubbing');
    if (overlay) { overlay.remove(); overlay = null; }
  };
  container.addEventListener('pointerenter', async (e) => {
    if (e.pointerType === 'touch') return;
    await ensure();
    if (!board || !container.matches(':hover')) return;
    show(at(e.clientX));
    clearInterval(timer);
    timer = setInterval(() => {
      if (Date.now() - lastMove < 800) return; // the pointer is driving
      show((index + 1) % board.tiles.length);
    }, 450);
  });
  container.addEventListener('pointermove', (e) => {
    if (e.pointerType === 'touch' || !board) return;
    lastMove = Date.now();
    show(at(e.clientX));
  });
  container.addEventListener('pointerleave', (e) => { if (e.pointerType !== 'touch') stop(); });
  container.addEventListener('touchstart', () => { ensure(); }, { passive: true });
  container.addEventListener('touchmove', (e) => {
    if (!board || !e.touches[0]) return;
    show(at(e.touches[0].clientX));
  }, { passive: true });
  container.addEventListener('touchend', () => setTimeout(stop, 600), { passive: true });
  container.addEventListener('touchcancel', stop, { passive: true });
}
