// Tokens: only in the subprotocol, a new one after 4102, a refresh frame before exp.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect, tokenExpiry } from "../herald.js";
import { Events, FakeHerald, fakeToken, sleep } from "./fake-herald.js";

const FAST = { min: 10, max: 40 };
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

async function setup(t, options, serverOptions = {}) {
  const server = await FakeHerald.start(serverOptions);
  const hub = connect(server.url, { WebSocket, backoff: FAST, ...options });
  t.after(async () => {
    hub.close();
    await server.stop();
  });
  return { server, hub, states: new Events(hub, "state"), errors: new Events(hub, "error") };
}

test("the token travels in the herald.bearer subprotocol, never in the URL", async (t) => {
  const token = fakeToken("42", inAnHour());
  const { server } = await setup(t, { token });
  const conn = await server.nextConnection();

  assert.equal(conn.protocol, `herald.bearer.${token}`);
  assert.equal(conn.url, "/ws");
});

test("without a token no subprotocol is offered", async (t) => {
  const { server } = await setup(t, {});
  const conn = await server.nextConnection();
  assert.equal(conn.protocol, "");
  assert.deepEqual(server.upgrades, [""]);
});

test("getToken supplies the first token", async (t) => {
  const token = fakeToken("7", inAnHour());
  const { server } = await setup(t, { getToken: async () => token });
  const conn = await server.nextConnection();
  assert.equal(conn.token, token);
});

test("after 4102 token_expired it asks getToken and reconnects with the new token", async (t) => {
  const tokens = [fakeToken("42", inAnHour()), fakeToken("42", inAnHour() + 1)];
  let calls = 0;
  const { server, hub, states } = await setup(t, { getToken: async () => tokens[calls++] });
  hub.subscribe("g", () => {});
  const first = await server.nextConnection();
  assert.equal(first.token, tokens[0]);
  await first.nextFrame();
  first.close(4102, "token_expired");

  const second = await server.nextConnection();
  assert.equal(second.token, tokens[1]);
  assert.equal(calls, 2);
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "g" });
  assert.ok(states.seen.some((s) => s.code === 4102 && s.reconnecting));
});

test("after 4102 without getToken it stops: the expired token would be refused", async (t) => {
  const { server, states } = await setup(t, { token: fakeToken("42", inAnHour()) });
  const conn = await server.nextConnection();
  await states.until((s) => s.state === "open");
  conn.close(4102, "token_expired");

  const closed = await states.until((s) => s.state === "closed");
  assert.deepEqual(closed, { state: "closed", code: 4102, reason: "token_expired", reconnecting: false });
  await sleep(150);
  assert.equal(server.pendingConnections(), 0);
});

test("an upgrade refused before open (401) makes it ask getToken again", async (t) => {
  const good = fakeToken("42", inAnHour());
  const stale = fakeToken("42", 1);
  const issued = [stale, good];
  const { server } = await setup(
    t,
    { getToken: async () => issued.shift() },
    { refuseUpgrade: (req) => req.headers["sec-websocket-protocol"] !== `herald.bearer.${good}` },
  );

  const conn = await server.nextConnection();
  assert.equal(conn.token, good);
  assert.deepEqual(server.upgrades, [`herald.bearer.${stale}`, `herald.bearer.${good}`]);
});

test("a failing getToken is an error event, and the hub tries again", async (t) => {
  let calls = 0;
  const token = fakeToken("42", inAnHour());
  const { server, errors } = await setup(t, {
    getToken: async () => {
      if (calls++ === 0) throw new Error("auth service down");
      return token;
    },
  });

  const conn = await server.nextConnection();
  assert.equal(conn.token, token);
  assert.deepEqual(errors.seen[0], { error: "get_token_failed", message: "auth service down" });
});

test("before exp it sends a refresh frame with a token from getToken, and again after refreshed", async (t) => {
  const now = () => Math.floor(Date.now() / 1000);
  const first = fakeToken("42", now() + 2);
  const renewed = [fakeToken("42", now() + 3), fakeToken("42", now() + 4)];
  const handed = [];
  const { server, hub } = await setup(t, {
    getToken: async () => {
      handed.push(handed.length === 0 ? first : renewed.shift());
      return handed.at(-1);
    },
  });
  hub.subscribe("g", () => {});
  const conn = await server.nextConnection();
  assert.equal(conn.token, first);
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "g" });

  const refresh = await conn.nextFrame();
  assert.equal(refresh.type, "refresh");
  assert.equal(refresh.token, handed[1]);
  assert.ok(Date.now() / 1000 < tokenExpiry(first), "the refresh must come before the old token's exp");
  // herald answers with the new expiry; the next refresh is planned from it.
  conn.send({ type: "refreshed", exp: now() + 2 });
  const again = await conn.nextFrame();
  assert.equal(again.type, "refresh");
  assert.equal(again.token, handed[2]);
  assert.equal(handed.length, 3);
});

test("a token without getToken is never refreshed", async (t) => {
  const { server } = await setup(t, { token: fakeToken("42", Math.floor(Date.now() / 1000) + 1) });
  const conn = await server.nextConnection();
  await sleep(1200);
  assert.equal(conn.pending(), 0);
});

test("tokenExpiry reads exp from a JWT and ignores anything else", () => {
  assert.equal(tokenExpiry(fakeToken("1", 1700000000)), 1700000000);
  assert.equal(tokenExpiry("not a token"), undefined);
  assert.equal(tokenExpiry("a.b.c"), undefined);
});
