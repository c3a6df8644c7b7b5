// Connection state, herald's close-code table (reconnect or stop) and the backoff.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect, reconnectDelay, shouldReconnect } from "../herald.js";
import { Events, FakeHerald, sleep } from "./fake-herald.js";

const FAST = { min: 10, max: 40 };

async function setup(t, options = {}, serverOptions = {}) {
  const server = await FakeHerald.start(serverOptions);
  const hub = connect(server.url, { WebSocket, backoff: FAST, ...options });
  t.after(async () => {
    hub.close();
    await server.stop();
  });
  return { server, hub, states: new Events(hub, "state") };
}

test("state goes connecting, open, then closed with herald's code and reason", async (t) => {
  const { server, states } = await setup(t);
  const conn = await server.nextConnection();
  await states.until((s) => s.state === "open");
  conn.close(4403, "banned");
  await states.until((s) => s.state === "closed");

  assert.deepEqual(states.seen, [
    { state: "connecting" },
    { state: "open" },
    { state: "closed", code: 4403, reason: "banned", reconnecting: false },
  ]);
});

for (const [code, reason] of [
  [1012, "service_restart"],
  [1013, "try_again_later"],
  [4100, "slow_consumer"],
  [4101, "heartbeat_timeout"],
  [4199, "herald_reserved"],
]) {
  test(`reconnects after ${code} ${reason} and joins its groups again`, async (t) => {
    const { server, hub, states } = await setup(t);
    hub.subscribe("room:1", () => {});
    const first = await server.nextConnection();
    await first.nextFrame();
    first.close(code, reason);

    const second = await server.nextConnection();
    assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "room:1" });
    const closed = states.seen.find((s) => s.state === "closed");
    assert.deepEqual(closed, { state: "closed", code, reason, reconnecting: true });
    await states.until((s) => s.state === "open" && states.seen.indexOf(s) > states.seen.indexOf(closed));
  });
}

test("reconnects after the connection drops without a close frame (1006)", async (t) => {
  const { server, states } = await setup(t);
  const first = await server.nextConnection();
  await states.until((s) => s.state === "open");
  first.drop();

  await server.nextConnection();
  const closed = states.seen.find((s) => s.state === "closed");
  assert.equal(closed.code, 1006);
  assert.equal(closed.reconnecting, true);
});

for (const [code, reason] of [
  [1000, "bye"],
  [3000, "app"],
  [4000, "maintenance"],
  [4099, "suggested reconnect range, but the backend chose it"],
  [4200, "x"],
  [4321, "room deleted"],
  [4999, "last"],
  [1003, "binary_frame"],
  [1009, "frame_too_large"],
]) {
  test(`stops after ${code} and shows code and reason`, async (t) => {
    const { server, states } = await setup(t);
    const conn = await server.nextConnection();
    await states.until((s) => s.state === "open");
    conn.close(code, reason);

    const closed = await states.until((s) => s.state === "closed");
    assert.deepEqual(closed, { state: "closed", code, reason, reconnecting: false });
    await sleep(150); // several times FAST.max: a reconnect would have happened by now
    assert.equal(server.pendingConnections(), 0);
  });
}

test("shouldReconnect follows herald's close-code table", () => {
  for (const code of [1001, 1006, 1011, 1012, 1013, 1014, 4100, 4101, 4102, 4150, 4199]) {
    assert.equal(shouldReconnect(code), true, String(code));
  }
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 3000, 3999, 4000, 4099, 4200, 4403, 4999]) {
    assert.equal(shouldReconnect(code), false, String(code));
  }
});

test("reconnectDelay is full jitter over an exponentially growing, capped ceiling", () => {
  const backoff = { min: 100, max: 1000 };
  const top = (attempt) => reconnectDelay(attempt, backoff, () => 0.999999);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 50].map(top), [99, 199, 399, 799, 999, 999, 999]);
  assert.equal(reconnectDelay(3, backoff, () => 0), 0, "full jitter may retry at once");
  assert.equal(reconnectDelay(3, backoff, () => 0.5), 400);
  for (let i = 0; i < 1000; i++) {
    const d = reconnectDelay(2, backoff);
    assert.ok(d >= 0 && d < 400, `${d}`);
  }
});

test("keeps retrying with backoff while herald refuses, then connects", async (t) => {
  let refusals = 3;
  const { server, hub, states } = await setup(t, {}, { refuseUpgrade: () => refusals-- > 0 });
  hub.subscribe("g", () => {});

  const conn = await server.nextConnection();
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "g" });
  assert.equal(server.upgrades.length, 4);
  const closes = states.seen.filter((s) => s.state === "closed");
  assert.equal(closes.length, 3);
  assert.ok(closes.every((s) => s.code === 1006 && s.reconnecting));
});

test("after a silence it pings; a socket that stays silent is given up and replaced", async (t) => {
  const { server, hub, states } = await setup(t, { heartbeat: { interval: 60, timeout: 60 } });
  hub.subscribe("g", () => {});
  const first = await server.nextConnection();
  assert.deepEqual(await first.nextFrame(), { type: "subscribe", group: "g" });
  first.send({ type: "subscribed", group: "g", offset: 0 });

  // herald answers the first ping: the connection stays.
  assert.deepEqual(await first.nextFrame(), { type: "ping" });
  first.send({ type: "pong" });
  assert.deepEqual(await first.nextFrame(), { type: "ping" });
  assert.equal(server.pendingConnections(), 0);
  // Now nothing comes back (a dead network path): the hub gives up and reconnects.
  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "g" });
  const closed = states.seen.find((s) => s.state === "closed");
  assert.deepEqual(closed, { state: "closed", code: 1006, reason: "heartbeat_timeout", reconnecting: true });
});

test("heartbeat: false sends no pings", async (t) => {
  const { server } = await setup(t, { heartbeat: false });
  const conn = await server.nextConnection();
  await sleep(200);
  assert.equal(conn.pending(), 0);
});
