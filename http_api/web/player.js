// HLS playback: hls.js where MediaSource exists, the browser's own HLS only where it does not.

import { mediaUrl } from './config.js';

let hlsModule = null;
function loadHls() {
  if (!hlsModule) hlsModule = import('./vendor/hls/hls.min.mjs').then((m) => m.default);
  return hlsModule;
}

function hasMediaSource() {
  return !!(window.MediaSource || window.ManagedMediaSource || window.WebKitMediaSource);
}

/**
 * attachHls(videoEl, url, {variants}) -> controller
 * controller.levels: [{index, label}] (index -1 is Auto); controller.setLevel(i);
 * controller.onLevels(fn) / onLevelSwitch(fn); controller.destroy().
 * `growing`: the video is still being transcoded (its playlists grow): start at 0.
 * `variants` ({'360p': url}) lets the native fallback switch playlists by hand.
 */
export async function attachHls(video, url, { variants = {}, autoplay = false, growing = false } = {}) {
  const src = mediaUrl(url);
  const listeners = { levels: new Set(), switch: new Set(), error: new Set() };
  const ctl = {
    engine: 'none',
    levels: [{ index: -1, label: 'Auto' }],
    current: -1,
    playing: -1,
    onLevels(fn) { listeners.levels.add(fn); fn(ctl.levels); },
    onLevelSwitch(fn) { listeners.switch.add(fn); },
    onError(fn) { listeners.error.add(fn); },
    setLevel() {},
    destroy() {},
  };
  const emit = (kind, arg) => { for (const fn of listeners[kind]) fn(arg); };

  if (hasMediaSource()) {
    let Hls = null;
    try { Hls = await loadHls(); } catch (e) { console.warn('hls.js failed to load', e); }
    if (Hls && Hls.isSupported()) {
      const hls = new Hls({
        enableWorker: true,
        workerPath: new URL('./vendor/hls/hls.worker.js', import.meta.url).href,
        capLevelToPlayerSize: false,
        // A video still being transcoded has EVENT playlists that grow: hls.js treats them as
        // live, and would start near the newest segment; a viewer wants the beginning.
        ...(growing ? { startPosition: 0 } : {}),
      });
      ctl.engine = 'hls.js';
      ctl.hls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
        const levels = (data.levels || hls.levels || []).map((lvl, index) => ({ lvl, index }))
          .filter(({ lvl }) => lvl.height || lvl.width || lvl.videoCodec);
        ctl.levels = [{ index: -1, label: 'Auto' }].concat(levels
          .sort((a, b) => (b.lvl.height || 0) - (a.lvl.height || 0))
          .map(({ lvl, index }) => ({ index, label: lvl.height ? `${Math.min(lvl.height, lvl.width || lvl.height)}p` : (lvl.name || `Level ${index + 1}`), height: lvl.height })));
        emit('levels', ctl.levels);
        if (autoplay) video.play().catch(() => {});
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => {
        ctl.playing = data.level;
        emit('switch', { auto: hls.autoLevelEnabled, level: data.level });
      });
      let retryTimer = null;
      let mediaRecoveries = 0;
      hls.on(Hls.Events.ERROR, (_e, data) => {
        if (!data.fatal) return;
        clearTimeout(retryTimer);
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
          // Offline or a hiccup: try again calmly (the playlist itself if that is what failed).
          const manifest = /manifest/i.test(data.details || '');
          retryTimer = setTimeout(() => (manifest ? hls.loadSource(src) : hls.startLoad()), manifest ? 3000 : 1500);
        } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRecoveries < 3) {
          mediaRecoveries += 1;
          hls.recoverMediaError();
        } else emit('error', data);
      });
      ctl.setLevel = (index) => {
        ctl.current = index;
        if (index === -1) hls.currentLevel = -1; // back to automatic switching
        else if (!video.buffered.length) hls.loadLevel = index; // nothing shown yet: just load it
        else hls.currentLevel = index; // switch now (flushes the buffer)
        emit('switch', { auto: index === -1, level: index === -1 ? hls.currentLevel : index });
      };
      ctl.destroy = () => { clearTimeout(retryTimer); hls.destroy(); };
      hls.loadSource(src);
      hls.attachMedia(video);
      return ctl;
    }
  }

  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    ctl.engine = 'native';
    const names = Object.keys(variants).filter((k) => variants[k]);
    names.sort((a, b) => parseInt(b, 10) - parseInt(a, 10));
    ctl.levels = [{ index: -1, label: 'Auto' }].concat(names.map((name, index) => ({ index, label: name })));
    ctl.setLevel = (index) => {
      const t = video.currentTime;
      const wasPlaying = !video.paused;
      ctl.current = index;
      video.src = index === -1 ? src : mediaUrl(variants[names[index]]);
      video.addEventListener('loadedmetadata', () => {
        video.currentTime = t;
        if (wasPlaying) video.play().catch(() => {});
      }, { once: true });
      emit('switch', { auto: index === -1, level: index });
    };
    video.src = src;
    if (autoplay) video.play().catch(() => {});
    ctl.destroy = () => { video.removeAttribute('src'); video.load(); };
    return ctl;
  }

  ctl.engine = 'unsupported';
  setTimeout(() => emit('error', { details: 'This browser cannot play HLS.' }), 0);
  return ctl;
}
