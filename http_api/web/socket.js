// The /ws client: one socket for the whole app, authenticated with a single-use ticket when
// signed in, reconnecting with jittered backoff, and resubscribing every channel with
// `since: {offset, epoch}` of the last event seen so nothing is missed. When the server cannot
// fill the gap (`recovered: false`) the channel's `onReset` reloads its data over REST.

import { wsUrl } from './config.js';
import { accessToken, isSignedIn, post } from './api.js';

const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 8_000;
const MAX_BACKOFF_MS = 15_000;

class Channel {
  constructor(name) {
    this.name = name;
    this.handlers = new Set(); // {onEvent, onReset, onSubscribed, onGone}
    this.offset = null; // last history offset seen
    this.epoch = null;
    this.subscribed = false;
  }
}

/** Which channel an event arrived on (events carry no channel name). */
function channelsFor(msg, user) {
  switch (msg.type) {
    case 'video_update':
    case 'viewer_count':
    case 'new_comment':
    case 'comment_updated':
    case 'comment_deleted':
      return [`video:${msg.video_id}`];
    case 'processing':
    case 'rendition_ready':
    case 'playable':
      // The owner's copy (on user:{id}) carries progress; watchers' copy does not.
      return 'progress' in msg && user ? [`user:${user}`] : [`video:${msg.video_id}`];
    case 'clip_feed':
      return ['feed:clips'];
    case 'new_follower':
    case 'clip_viewed':
    case 'notification':
      return user ? [`user:${user}`] : [];
    default:
      return [];
  }
}

export class RealtimeClient extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.state = 'idle'; // idle | connecting | open | reconnecting | offline
    this.channels = new Map();
    this.userId = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer}
    this.wantOpen = false;
    this.generation = 0;
    window.addEventListener('online', () => { if (this.wantOpen && this.state !== 'open') this.reconnectNow(); });
    window.addEventListener('offline', () => { if (this.wantOpen) this.setState('offline'); });
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  /** Who the socket should speak for; reconnects when it changes (sign in / sign out). */
  setUser(userId) {
    if (userId === this.userId) return;
    this.userId = userId;
    for (const name of [...this.channels.keys()]) {
      if (name.startsWith('user:') || name === 'feed:clips') {
        const ch = this.channels.get(name);
        if (!userId || name !== `user:${userId}`) { ch.offset = null; ch.epoch = null; }
      }
    }
    if (this.ws) this.restart();
    else this.ensureOpen();
  }

  /**
   * subscribe('video:<id>', {onEvent(msg), onReset(), onSubscribed(msg), onGone(msg)}) -> unsubscribe()
   * onReset runs when missed events could not be recovered: reload over REST. onGone runs when
   * the server took the socket off the channel unasked (its video made private or deleted).
   */
  subscribe(name, handler) {
    let ch = this.channels.get(name);
    const fresh = !ch;
    if (!ch) { ch = new Channel(name); this.channels.set(name, ch); }
    ch.handlers.add(handler);
    if (fresh && this.state === 'open') this.sendSubscribe(ch);
    this.ensureOpen();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      ch.handlers.delete(handler);
      if (ch.handlers.size === 0 && this.channels.get(name) === ch) {
        this.channels.delete(name);
        // with an id, so its answer is not taken for the server's unasked one (see `handle`)
        if (this.state === 'open' && ch.subscribed) this.send({ type: 'unsubscribe', channel: name, id: String(this.nextId++) });
      }
    };
  }

  ensureOpen() {
    const needed = this.channels.size > 0 || isSignedIn();
    if (!needed) return;
    this.wantOpen = true;
    if (!this.ws && !this.retryTimer) this.connect();
  }

  restart() {
    this.closeSocket(4000, 'restart');
    this.attempt = 0;
    this.connect();
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.closeSocket(4000, 'reconnect');
    this.attempt = 0;
    this.connect();
  }

  /** For tests and the status pill: drop the connection as a network failure would. */
  drop() {
    if (this.ws) this.ws.close(4000, 'dropped by client');
  }

  closeSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.generation += 1;
    this.stopPing();
    for (const ch of this.channels.values()) ch.subscribed = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(code, reason); } catch { /* already closed */ }
    }
    this.failPending('The connection closed.');
  }

  async connect() {
    this.retryTimer = null;
    const gen = ++this.generation;
    this.setState(this.attempt === 0 ? 'connecting' : 'reconnecting');
    let url = wsUrl('/ws');
    if (isSignedIn()) {
      try {
        const t = await post('/api/ws/ticket', undefined, { auth: 'required' });
        url += `?ticket=${encodeURIComponent(t.ticket)}`;
      } catch (e) {
        if (gen !== this.generation) return;
        if (e && e.status === 401) {
          // Signed out meanwhile: carry on anonymously.
        } else {
          this.scheduleReconnect();
          return;
        }
      }
    }
    if (gen !== this.generation) return;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.setState('open');
      for (const ch of this.channels.values()) this.sendSubscribe(ch);
      this.startPing();
    };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      this.handle(msg);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.stopPing();
      for (const ch of this.channels.values()) ch.subscribed = false;
      this.failPending('The connection closed.');
      // An idle anonymous socket is closed by the server (4001): only come back when needed.
      const needed = this.channels.size > 0 || isSignedIn();
      if (!needed) { this.wantOpen = false; this.setState('idle'); return; }
      this.scheduleReconnect(e.code);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect(code) {
    if (this.retryTimer) return;
    this.attempt += 1;
    let delay;
    if (code === 1012 || code === 4008) {
      delay = 1000 + Math.random() * 4000; // server restart or slow socket: 1-5 s
    } else {
      const cap = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempt - 1, 6));
      delay = cap / 2 + Math.random() * (cap / 2); // jittered exponential backoff
    }
    this.setState(navigator.onLine === false ? 'offline' : 'reconnecting');
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startPing() {
    this.stopPing();
    this.pingTimer = setInterval(() => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      this.send({ type: 'ping' });
      clearTimeout(this.pongTimer);
      // No answer: the connection is dead even if the browser has not noticed.
      this.pongTimer = setTimeout(() => { if (this.ws) this.ws.close(4000, 'no pong'); }, PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  stopPing() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = this.pongTimer = null;
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** A command with a reply: request({type:'view', video_id}) -> ack data (rejects on error). */
  request(msg, timeoutMs = 8000) {
    return new Promise((resolve, reject) => {
      const id = String(this.nextId++);
      if (!this.send({ ...msg, id })) { reject(new Error('Not connected.')); return; }
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error('No reply.')); }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  failPending(reason) {
    for (const { reject, timer } of this.pending.values()) { clearTimeout(timer); reject(new Error(reason)); }
    this.pending.clear();
  }

  sendSubscribe(ch) {
    const msg = { type: 'subscribe', channel: ch.name };
    if (ch.offset != null && ch.epoch) msg.since = { offset: ch.offset, epoch: ch.epoch };
    ch.sentSince = !!msg.since;
    this.send(msg);
  }

  handle(msg) {
    if (msg.id != null && this.pending.has(String(msg.id))) {
      const p = this.pending.get(String(msg.id));
      this.pending.delete(String(msg.id));
      clearTimeout(p.timer);
      if (msg.type === 'error') {
        const err = new Error((msg.error && msg.error.message) || 'Error');
        err.code = msg.error && msg.error.code;
        p.reject(err);
      } else p.resolve(msg.data !== undefined ? msg.data : msg);
      if (msg.type !== 'subscribed') return;
    }
    switch (msg.type) {
      case 'welcome':
      case 'ack':
        return;
      case 'unsubscribed': {
        // Unasked (no id): the video was made private or deleted, and this socket may not watch
        // it any more. The channel is dropped (not subscribed again on reconnect) and its
        // handlers told.
        const ch = msg.id == null ? this.channels.get(msg.channel) : null;
        if (!ch) return;
        this.channels.delete(msg.channel);
        ch.subscribed = false;
        for (const h of ch.handlers) {
          try { if (h.onGone) h.onGone(msg); } catch (e) { console.warn('gone handler failed', e); }
        }
        return;
      }
      case 'pong':
        clearTimeout(this.pongTimer);
        return;
      case 'token_expiring':
        accessToken({ force: true })
          .then((token) => { if (token) this.send({ type: 'auth', token }); })
          .catch(() => {});
        return;
      case 'subscribed': {
        const ch = this.channels.get(msg.channel);
        if (!ch) return;
        const wasSubscribed = ch.subscribed;
        const hadPosition = ch.offset != null && ch.epoch;
        const lost = !msg.recovered && (ch.sentSince || wasSubscribed || (hadPosition && ch.epoch !== msg.epoch));
        ch.subscribed = true;
        ch.sentSince = false;
        ch.epoch = msg.epoch;
        if (msg.recovered) {
          // Missed events follow, each with its offset.
        } else {
          ch.offset = msg.offset;
        }
        for (const h of ch.handlers) if (h.onSubscribed) h.onSubscribed(msg);
        if (lost) for (const h of ch.handlers) if (h.onReset) h.onReset(msg);
        this.dispatchEvent(new CustomEvent('subscribed', { detail: msg }));
        return;
      }
      case 'error':
        this.dispatchEvent(new CustomEvent('error', { detail: msg }));
        return;
      default: {
        for (const name of channelsFor(msg, this.userId)) {
          const ch = this.channels.get(name);
          if (!ch) continue;
          if (msg.type !== 'video_update' && typeof msg.offset === 'number' && msg.offset > 0) {
            ch.offset = Math.max(ch.offset || 0, msg.offset);
          }
          for (const h of ch.handlers) {
            try { if (h.onEvent) h.onEvent(msg); } catch (e) { console.warn('event handler failed', e); }
          }
        }
        this.dispatchEvent(new CustomEvent('message', { detail: msg }));
      }
    }
  }
}

export const realtime = new RealtimeClient();
