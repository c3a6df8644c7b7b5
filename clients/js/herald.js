// herald.js: the browser client for herald, a notification hub.
//
// A dependency-free ES module (no build step). It keeps one WebSocket to herald's `/ws`,
// (re)subscribes to groups, resumes each group from its last offset and epoch after a
// reconnect, delivers every notification once and in offset order, follows herald's
// close-code table (reconnect or stop) and refreshes tokens before they expire.
//
//   import { connect } from "/herald.js";
//   const hub = connect("wss://herald.example.com/ws", { getToken: fetchToken });
//   hub.subscribe("room:1", (n) => console.log(n.offset, n.event, n.data));
//   hub.on("state", (s) => console.log(s.state, s.code, s.reason));
//
// Types: herald.d.ts beside this file.

/** Reconnect delays in milliseconds when `options.backoff` does not say. */
export const DEFAULT_BACKOFF = Object.freeze({ min: 500, max: 30000 });

/**
 * Heartbeat when `options.heartbeat` does not say: after `interval` ms without a frame
 * from herald send a `ping`, and give the socket up (as 1006, then reconnect) when
 * nothing arrives within `timeout` ms after it. A sleeping laptop or a dead NAT entry
 * leaves a socket that looks open for minutes; this notices within interval + timeout.
 */
export const DEFAULT_HEARTBEAT = Object.freeze({ interval: 25000, timeout: 10000 });

/** Subprotocol prefix that carries the token (never the URL: proxies log URLs). */
export const BEARER_PROTOCOL_PREFIX = "herald.bearer.";

/** Refresh a token this long before its `exp` at most (earlier for short-lived tokens). */
const REFRESH_MARGIN_MS = 30000;

/**
 * Whether a client should reconnect after a close with this code.
 *
 * Reconnect: transient failures (1001 going away, 1006 no close frame, 1011 server
 * error, 1012 service restart, 1013 try again later, 1014 bad gateway) and herald's own
 * 4100-4199 (slow consumer, heartbeat timeout, token expired). Stop: 1000 and every
 * other code, which is either a client bug that a reconnect would repeat (1002, 1003,
 * 1007, 1009) or a code a backend chose with group/user close (3000-4999).
 */
export function shouldReconnect(code) {
  if (code >= 4100 && code <= 4199) return true;
  return [1001, 1006, 1011, 1012, 1013, 1014].includes(code);
}

/**
 * Delay before reconnect attempt `attempt` (0 for the first): exponential backoff with
 * full jitter, a uniformly random value in [0, min(max, min * 2^attempt)), so that a
 * thousand pages dropped by one restart do not come back in the same millisecond.
 */
export function reconnectDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const ceiling = Math.min(backoff.max, backoff.min * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** The `exp` claim (seconds since the Unix epoch) of a JWT, or undefined. */
export function tokenExpiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "="))).exp;
    return Number.isFinite(exp) ? exp : undefined;
  } catch {
    return undefined;
  }
}

/** Opens a hub connection to herald's `ws(s)://host/ws`. */
export function connect(url, options = {}) {
  return new Hub(url, options);
}

/** One group this hub is in: its handlers and where delivery stands. */
class GroupState {
  constructor() {
    /** Handlers, each called once per notification. */
    this.handlers = new Set();
    /** Offset of the last notification delivered (or the `subscribed` offset). */
    this.offset = undefined;
    /** Epoch `offset` belongs to; offsets of different epochs are not comparable. */
    this.epoch = undefined;
    /** Whether herald confirmed the membership on the current socket (`subscribed`). */
    this.joined = false;
    /** Whether the pending subscribe asked to resume (carried `since` and `epoch`). */
    this.resuming = false;
  }
}

/** A handler's membership of a group; `unsubscribe()` ends it. */
class Subscription {
  constructor(hub, group, handler) {
    this.group = group;
    this._hub = hub;
    this._handler = handler;
    this._active = true;
  }

  /** Stops calling the handler; leaves the group when it was the last handler. */
  unsubscribe() {
    if (!this._active) return;
    this._active = false;
    this._hub._removeHandler(this.group, this._handler);
  }
}

/** A connection to herald that outlives sockets: see `connect`. */
class Hub {
  constructor(url, options) {
    if (!/^wss?:\/\//.test(url)) throw new TypeError(`herald: url must be ws:// or wss://, got ${url}`);
    this._url = url;
    this._token = options.token;
    this._getToken = options.getToken;
    this._backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
    this._heartbeat = options.heartbeat === false ? null : { ...DEFAULT_HEARTBEAT, ...options.heartbeat };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") throw new TypeError("herald: no WebSocket implementation");
    /** @type {Map<string, GroupState>} */
    this._groups = new Map();
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    this._socket = null;
    this._state = "closed";
    this._stopped = false;
    /** Consecutive attempts that did not reach `open`; drives the backoff. */
    this._attempt = 0;
    /** Set when the next attempt needs a fresh token from getToken (expiry, refused upgrade). */
    this._tokenStale = !this._token && Boolean(this._getToken);
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._heartbeatTimer = null;
    // Start after the caller's synchronous code, so listeners added right after
    // connect() see the first "connecting".
    this._state = "connecting";
    queueMicrotask(() => this._open());
  }

  /** "connecting", "open" or "closed". */
  get state() {
    return this._state;
  }

  /** Calls `handler(notification)` for each notification of `group`, in offset order, once. */
  subscribe(group, handler) {
    if (typeof handler !== "function") throw new TypeError("herald: subscribe needs a handler");
    let state = this._groups.get(group);
    if (!state) {
      state = new GroupState();
      this._groups.set(group, state);
      if (this._state === "open") this._send({ type: "subscribe", group });
    }
    state.handlers.add(handler);
    return new Subscription(this, group, handler);
  }

  /** Listens to "state", "recovered" or "error"; returns a function that stops listening. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  /** Closes the connection (1000) for good: no reconnect, no further events but "state". */
  close() {
    if (this._stopped) return;
    this._stopped = true;
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._refreshTimer);
    clearTimeout(this._heartbeatTimer);
    if (this._socket) {
      this._socket.close(1000, "client closed");
    } else {
      this._setState({ state: "closed", code: 1000, reason: "client closed", reconnecting: false });
    }
  }

  _removeHandler(group, handler) {
    const state = this._groups.get(group);
    if (!state) return;
    state.handlers.delete(handler);
    if (state.handlers.size === 0) {
      this._groups.delete(group);
      if (this._state === "open") this._send({ type: "unsubscribe", group });
    }
  }

  _emit(event, payload) {
    for (const fn of [...(this._listeners.get(event) ?? [])]) {
      try {
        fn(payload);
      } catch (e) {
        report(e);
      }
    }
  }

  _setState(payload) {
    this._state = payload.state;
    this._emit("state", payload);
  }

  async _open() {
    if (this._stopped) return;
    this._setState({ state: "connecting" });
    if (this._tokenStale) {
      try {
        this._token = await this._getToken();
        this._tokenStale = false;
      } catch (e) {
        this._emit("error", { error: "get_token_failed", message: String(e?.message ?? e) });
        if (!this._stopped) this._retry({ code: 1006, reason: "" });
        return;
      }
    }
    if (this._stopped) return;
    const protocols = this._token ? [BEARER_PROTOCOL_PREFIX + this._token] : [];
    let socket;
    try {
      socket = new this._WebSocket(this._url, protocols);
    } catch (e) {
      this._emit("error", { error: "connect_failed", message: String(e?.message ?? e) });
      this._retry({ code: 1006, reason: "" });
      return;
    }
    this._socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this._attempt = 0;
      this._setState({ state: "open" });
      for (const [group, state] of this._groups) {
        const frame = subscribeFrame(group, state);
        state.joined = false;
        state.resuming = frame.since !== undefined;
        this._send(frame);
      }
      this._scheduleRefresh(this._token && tokenExpiry(this._token));
      this._armHeartbeat(socket);
    };
    // A failure is always followed by a close event, which decides what happens next.
    socket.onerror = () => {};
    socket.onmessage = (event) => {
      if (this._socket !== socket) return;
      this._armHeartbeat(socket);
      this._onFrame(event.data);
    };
    socket.onclose = (event) => {
      if (this._socket !== socket) return;
      // An upgrade refused before open (401 for an expired token, say) shows as 1006.
      if (event.code === 4102 || (!opened && this._getToken)) this._tokenStale = true;
      this._lost(event.code, event.reason ?? "");
    };
  }

  /** The current socket is gone: forget it, then reconnect or stop. */
  _lost(code, reason) {
    this._socket = null;
    clearTimeout(this._refreshTimer);
    clearTimeout(this._heartbeatTimer);
    this._retry({ code, reason });
  }

  /** (Re)starts the silence timer: ping after `interval`, give up `timeout` later. */
  _armHeartbeat(socket) {
    clearTimeout(this._heartbeatTimer);
    if (!this._heartbeat) return;
    const { interval, timeout } = this._heartbeat;
    this._heartbeatTimer = setTimeout(() => {
      if (this._socket !== socket) return;
      this._send({ type: "ping" });
      this._heartbeatTimer = setTimeout(() => {
        if (this._socket !== socket) return;
        // The closing handshake cannot complete on a dead connection: do not wait for it.
        socket.onclose = socket.onmessage = null;
        socket.close();
        this._lost(1006, "heartbeat_timeout");
      }, timeout);
    }, interval);
  }

  /** After a close: reconnect later, or stop and say why. */
  _retry({ code, reason }) {
    // Without getToken a new token cannot be had, and the expired one would be refused.
    const hopeless = code === 4102 && !this._getToken;
    const reconnecting = !this._stopped && !hopeless && shouldReconnect(code);
    this._setState({ state: "closed", code, reason, reconnecting });
    if (!reconnecting) {
      this._stopped = true;
      return;
    }
    const delay = reconnectDelay(this._attempt++, this._backoff);
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  _send(frame) {
    if (this._socket && this._socket.readyState === 1) this._socket.send(JSON.stringify(frame));
  }

  _onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // herald sends JSON only; anything else is not ours to interpret
    }
    switch (frame.type) {
      case "notify":
        return this._onNotify(frame);
      case "subscribed":
        return this._onSubscribed(frame);
      case "refreshed":
        return this._scheduleRefresh(frame.exp);
      case "unsubscribed":
        // Also sent when a refreshed token no longer allows a group.
        if (this._groups.has(frame.group)) this._groups.get(frame.group).joined = false;
        return undefined;
      case "error":
        return this._emit("error", { error: frame.error, message: frame.message });
      default:
        return undefined; // pong: nothing to do
    }
  }

  _onSubscribed(frame) {
    const state = this._groups.get(frame.group);
    if (!state) return;
    state.joined = true;
    // Only an answer to a resume says whether the gap was filled.
    const resumed = state.resuming && typeof frame.recovered === "boolean";
    state.resuming = false;
    // A resumed group continues from its own offset: herald replays what came after it.
    // Otherwise (first join, or a gap herald could not fill) live delivery starts after
    // the group's current offset.
    if (!(resumed && frame.recovered)) {
      state.offset = frame.offset;
    }
    state.epoch = frame.epoch ?? state.epoch;
    if (resumed) this._emit("recovered", { group: frame.group, recovered: frame.recovered });
  }

  _onNotify(frame) {
    const state = this._groups.get(frame.group);
    // Not ours (e.g. the personal group), or still in flight from a membership that
    // ended: a membership's notifications start after its `subscribed`.
    if (!state || !state.joined) return;
    const sameEpoch = frame.epoch === undefined || state.epoch === undefined || frame.epoch === state.epoch;
    if (sameEpoch && state.offset !== undefined && frame.offset <= state.offset) return; // seen already
    state.offset = frame.offset;
    if (frame.epoch !== undefined) state.epoch = frame.epoch;
    for (const handler of [...state.handlers]) {
      try {
        handler(frame);
      } catch (e) {
        report(e);
      }
    }
  }

  /** Sends a `refresh` frame with a token from getToken a little before `exp`. */
  _scheduleRefresh(exp) {
    clearTimeout(this._refreshTimer);
    if (!this._getToken || !Number.isFinite(exp)) return;
    const remaining = exp * 1000 - Date.now();
    const delay = Math.max(0, remaining - Math.min(REFRESH_MARGIN_MS, remaining / 3));
    const socket = this._socket;
    this._refreshTimer = setTimeout(async () => {
      let token;
      try {
        token = await this._getToken();
      } catch (e) {
        // The old token stays in force; at its expiry herald closes with 4102 and the
        // reconnect asks getToken again.
        this._emit("error", { error: "get_token_failed", message: String(e?.message ?? e) });
        return;
      }
      if (this._socket !== socket || this._stopped) return;
      this._token = token;
      this._send({ type: "refresh", token });
    }, Math.min(delay, 2 ** 31 - 1));
  }
}

/** The subscribe frame for a group, resuming from its last offset when the epoch is known. */
function subscribeFrame(group, state) {
  // Without an epoch (a hub without history) offsets are not comparable across
  // connections, so there is nothing to resume from.
  if (state.epoch === undefined || state.offset === undefined) return { type: "subscribe", group };
  return { type: "subscribe", group, since: state.offset, epoch: state.epoch };
}

/** Reports an exception thrown by page code without stopping delivery to others. */
function report(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error(error);
}
