// A tiny in-process WebSocket server that plays herald's side of the protocol, driven
// step by step by each test: it accepts upgrades (answering a `herald.bearer.*`
// subprotocol as herald does), hands every connection to the test, and lets the test
// read the client's frames and send herald's frames and close codes.

import { WebSocketServer } from "ws";

/** How long a test waits for the client to do something before failing. */
const STEP_TIMEOUT_MS = 3000;

/** One upgraded connection as the server sees it. */
export class ServerConn {
  constructor(socket, request) {
    this.socket = socket;
    /** The path and query of the upgrade request (the token must never be there). */
    this.url = request.url;
    /** The subprotocol herald answered with (`herald.bearer.<token>`), or "". */
    this.protocol = socket.protocol;
    this._frames = [];
    this._waiters = [];
    this.closed = new Promise((resolve) => socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data));
      const waiter = this._waiters.shift();
      if (waiter) waiter(frame);
      else this._frames.push(frame);
    });
  }

  /** The token the client sent in the subprotocol, or undefined. */
  get token() {
    return this.protocol.startsWith("herald.bearer.") ? this.protocol.slice("herald.bearer.".length) : undefined;
  }

  /** The next frame the client sends. */
  nextFrame() {
    if (this._frames.length) return Promise.resolve(this._frames.shift());
    return withTimeout(new Promise((resolve) => this._waiters.push(resolve)), "a client frame");
  }

  /** Frames received and not yet read. */
  pending() {
    return this._frames.length;
  }

  /** Sends one herald frame. */
  send(frame) {
    this.socket.send(JSON.stringify(frame));
  }

  /** Sends a notify frame as herald builds it. */
  notify(group, offset, data, { epoch, event = "message" } = {}) {
    const frame = { type: "notify", group, event, offset, data };
    if (epoch !== undefined) frame.epoch = epoch;
    this.send(frame);
  }

  /** Closes with a code and reason, as herald or a backend's group close would. */
  close(code, reason = "") {
    this.socket.close(code, reason);
  }

  /** Drops the TCP connection without a close frame (the client sees 1006). */
  drop() {
    this.socket.terminate();
  }
}

/** A fake herald listening on a free loopback port. */
export class FakeHerald {
  static async start({ refuseUpgrade } = {}) {
    const server = new FakeHerald(refuseUpgrade);
    await new Promise((resolve) => server.wss.on("listening", resolve));
    return server;
  }

  constructor(refuseUpgrade) {
    this._conns = [];
    this._waiters = [];
    /** Every upgrade request seen, accepted or not. */
    this.upgrades = [];
    this.wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => [...protocols].find((p) => p.startsWith("herald.bearer.")) ?? false,
      verifyClient: (info, done) => {
        this.upgrades.push(info.req.headers["sec-websocket-protocol"] ?? "");
        if (refuseUpgrade && refuseUpgrade(info.req)) done(false, 401, "Unauthorized");
        else done(true);
      },
    });
    this.wss.on("connection", (socket, request) => {
      const conn = new ServerConn(socket, request);
      const waiter = this._waiters.shift();
      if (waiter) waiter(conn);
      else this._conns.push(conn);
    });
  }

  /** herald's `/ws` URL for this server. */
  get url() {
    return `ws://127.0.0.1:${this.wss.address().port}/ws`;
  }

  /** The next connection the client opens. */
  nextConnection() {
    if (this._conns.length) return Promise.resolve(this._conns.shift());
    return withTimeout(new Promise((resolve) => this._waiters.push(resolve)), "a connection");
  }

  /** Connections opened and not yet taken with nextConnection. */
  pendingConnections() {
    return this._conns.length;
  }

  async stop() {
    for (const client of this.wss.clients) client.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

/** Collects a hub's events of one kind, and waits for the next ones. */
export class Events {
  constructor(hub, name) {
    this.seen = [];
    this._waiters = [];
    hub.on(name, (payload) => {
      this.seen.push(payload);
      for (const w of this._waiters.splice(0)) w();
    });
  }

  /** Waits until an event matching `predicate` has been seen; returns it. */
  async until(predicate, what = "an event") {
    for (;;) {
      const found = this.seen.find(predicate);
      if (found) return found;
      await withTimeout(new Promise((resolve) => this._waiters.push(resolve)), what);
    }
  }
}

/** A JWT-shaped token (unsigned: the fake server does not verify) expiring at `exp`. */
export function fakeToken(sub, exp) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, exp })}.c2ln`;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until true (fails after 3 s). */
export async function waitFor(condition) {
  const deadline = Date.now() + 3000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met within 3 s");
    await sleep(5);
  }
}

function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
