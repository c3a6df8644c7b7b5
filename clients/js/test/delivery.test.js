// Subscribing, delivery order, once-only delivery, unsubscribe, error frames, close().

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect } from "../herald.js";
import { Events, FakeHerald, sleep, waitFor } from "./fake-herald.js";

const FAST = { min: 10, max: 40 };

async function setup(t, options = {}) {
  const server = await FakeHerald.start();
  const hub = connect(server.url, { WebSocket, backoff: FAST, ...options });
  t.after(async () => {
    hub.close();
    await server.stop();
  });
  return { server, hub };
}

test("subscribe frames go out on open, and notifications reach every handler in order", async (t) => {
  const { server, hub } = await setup(t);
  const calls = [];
  hub.subscribe("room:1", (n) => calls.push(["first", n.offset, n.data]));
  hub.subscribe("room:1", (n) => calls.push(["second", n.offset, n.data]));
  const conn = await server.nextConnection();

  // One subscribe for the group, however many handlers, and no resume on a first join.
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "room:1" });
  conn.send({ type: "subscribed", group: "room:1", offset: 4, epoch: "e1" });
  conn.notify("room:1", 5, { text: "a" }, { epoch: "e1" });
  conn.notify("room:1", 6, { text: "b" }, { epoch: "e1" });
  await waitFor(() => calls.length === 4);

  assert.deepEqual(calls, [
    ["first", 5, { text: "a" }],
    ["second", 5, { text: "a" }],
    ["first", 6, { text: "b" }],
    ["second", 6, { text: "b" }],
  ]);
  assert.equal(conn.pending(), 0, "a second handler must not send a second subscribe");
});

test("the handler gets the whole notify frame: group, event, offset, epoch, data", async (t) => {
  const { server, hub } = await setup(t);
  const got = [];
  hub.subscribe("news", (n) => got.push(n));
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.send({ type: "subscribed", group: "news", offset: 0, epoch: "ep" });
  conn.notify("news", 1, [1, 2], { epoch: "ep", event: "story.published" });
  await waitFor(() => got.length === 1);

  assert.deepEqual(got[0], { type: "notify", group: "news", event: "story.published", offset: 1, epoch: "ep", data: [1, 2] });
});

test("a notification whose offset was already delivered is dropped", async (t) => {
  const { server, hub } = await setup(t);
  const offsets = [];
  hub.subscribe("g", (n) => offsets.push(n.offset));
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.send({ type: "subscribed", group: "g", offset: 10, epoch: "e" });
  for (const offset of [9, 10, 11, 11, 12, 10, 13]) conn.notify("g", offset, null, { epoch: "e" });
  conn.notify("g", 14, null, { epoch: "e" });
  await waitFor(() => offsets.includes(14));

  assert.deepEqual(offsets, [11, 12, 13, 14]);
});

test("notifications before a membership's subscribed frame are not delivered", async (t) => {
  const { server, hub } = await setup(t);
  const offsets = [];
  const first = hub.subscribe("g", (n) => offsets.push(["first", n.offset]));
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.notify("g", 1, null); // herald never sends this before subscribed; nor is it delivered
  conn.send({ type: "subscribed", group: "g", offset: 1 });
  conn.notify("g", 2, null);
  await waitFor(() => offsets.length === 1);

  // Leave and join again: a notification still in flight from the old membership is
  // not the new handler's.
  first.unsubscribe();
  hub.subscribe("g", (n) => offsets.push(["second", n.offset]));
  assert.deepEqual(await conn.nextFrame(), { type: "unsubscribe", group: "g" });
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "g" });
  conn.notify("g", 3, null);
  conn.send({ type: "unsubscribed", group: "g" });
  conn.send({ type: "subscribed", group: "g", offset: 3 });
  conn.notify("g", 4, null);
  await waitFor(() => offsets.length === 2);

  assert.deepEqual(offsets, [["first", 2], ["second", 4]]);
});

test("subscribing while open sends the frame at once; groups are independent", async (t) => {
  const { server, hub } = await setup(t);
  const states = new Events(hub, "state");
  const conn = await server.nextConnection();
  await states.until((s) => s.state === "open");
  const a = [];
  const b = [];
  hub.subscribe("a", (n) => a.push(n.offset));
  hub.subscribe("b", (n) => b.push(n.offset));

  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "a" });
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "b" });
  conn.send({ type: "subscribed", group: "a", offset: 0 });
  conn.send({ type: "subscribed", group: "b", offset: 7 });
  conn.notify("a", 1, "x");
  conn.notify("b", 8, "y");
  conn.notify("elsewhere", 1, "z"); // e.g. the personal group, which nobody here asked for
  await waitFor(() => a.length === 1 && b.length === 1);

  assert.deepEqual([a, b], [[1], [8]]);
});

test("unsubscribe stops the handler; the last one leaves the group", async (t) => {
  const { server, hub } = await setup(t);
  const first = [];
  const second = [];
  const s1 = hub.subscribe("g", (n) => first.push(n.offset));
  const s2 = hub.subscribe("g", (n) => second.push(n.offset));
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.send({ type: "subscribed", group: "g", offset: 0 });
  conn.notify("g", 1, null);
  await waitFor(() => second.length === 1);

  s1.unsubscribe();
  s1.unsubscribe(); // twice is harmless
  conn.notify("g", 2, null);
  await waitFor(() => second.length === 2);
  assert.deepEqual(first, [1]);
  assert.equal(conn.pending(), 0, "the group still has a handler: no unsubscribe frame yet");

  s2.unsubscribe();
  assert.deepEqual(await conn.nextFrame(), { type: "unsubscribe", group: "g" });
  conn.notify("g", 3, null);
  await sleep(50);
  assert.deepEqual(second, [1, 2]);
});

test("herald's error frames become error events", async (t) => {
  const { server, hub } = await setup(t);
  const errors = new Events(hub, "error");
  hub.subscribe("secret", () => {});
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.send({ type: "error", error: "forbidden", message: "the token does not allow group \"secret\"" });

  const e = await errors.until(() => true);
  assert.deepEqual(e, { error: "forbidden", message: "the token does not allow group \"secret\"" });
});

test("a handler that throws does not stop the other handlers", async (t) => {
  const { server, hub } = await setup(t);
  const reported = [];
  const originalError = console.error;
  console.error = (e) => reported.push(e);
  t.after(() => {
    console.error = originalError;
  });
  const got = [];
  hub.subscribe("g", () => {
    throw new Error("page bug");
  });
  hub.subscribe("g", (n) => got.push(n.offset));
  const conn = await server.nextConnection();
  await conn.nextFrame();
  conn.send({ type: "subscribed", group: "g", offset: 0 });
  conn.notify("g", 1, null);
  await waitFor(() => got.length === 1);

  assert.deepEqual(got, [1]);
  assert.equal(reported[0].message, "page bug");
});

test("hub.close() closes with 1000, reports it and never reconnects", async (t) => {
  const { server, hub } = await setup(t);
  const states = new Events(hub, "state");
  const conn = await server.nextConnection();
  await states.until((s) => s.state === "open");

  hub.close();
  const closed = await conn.closed;
  assert.equal(closed.code, 1000);
  const state = await states.until((s) => s.state === "closed");
  assert.equal(state.code, 1000);
  assert.equal(state.reconnecting, false);
  await sleep(150); // many backoff periods (FAST.max is 40 ms)
  assert.equal(server.pendingConnections(), 0);
  assert.equal(hub.state, "closed");
});
