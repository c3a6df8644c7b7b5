// Resume after a reconnect: since + epoch in the subscribe frame, the "recovered" event,
// and once-only delivery across the seam.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { connect } from "../herald.js";
import { Events, FakeHerald, sleep, waitFor } from "./fake-herald.js";

const FAST = { min: 10, max: 40 };

async function setup(t) {
  const server = await FakeHerald.start();
  const hub = connect(server.url, { WebSocket, backoff: FAST });
  t.after(async () => {
    hub.close();
    await server.stop();
  });
  return { server, hub, recovered: new Events(hub, "recovered") };
}

/** Subscribes to `group`, joins at `offset` in `epoch` and delivers the given offsets. */
async function joined(server, group, offset, epoch, delivered) {
  const conn = await server.nextConnection();
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group });
  conn.send({ type: "subscribed", group, offset, epoch });
  for (const o of delivered) conn.notify(group, o, { n: o }, { epoch });
  return conn;
}

test("after 1012 it resumes from the last offset and epoch; recovered:true; nothing twice", async (t) => {
  const { server, hub, recovered } = await setup(t);
  const offsets = [];
  hub.subscribe("room:1", (n) => offsets.push(n.offset));
  const first = await joined(server, "room:1", 5, "e1", [6, 7]);
  await waitFor(() => offsets.length === 2);
  first.close(1012, "service_restart");

  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "room:1", since: 7, epoch: "e1" });
  second.send({ type: "subscribed", group: "room:1", offset: 9, epoch: "e1", recovered: true });
  // The replay (8, 9) and then live ones; a repeated 7 or 9 at the seam is dropped.
  for (const o of [7, 8, 9, 9, 10]) second.notify("room:1", o, { n: o }, { epoch: "e1" });
  await waitFor(() => offsets.includes(10));

  assert.deepEqual(offsets, [6, 7, 8, 9, 10]);
  assert.deepEqual(recovered.seen, [{ group: "room:1", recovered: true }]);
});

test("recovered:false is reported, and delivery continues in the new epoch", async (t) => {
  const { server, hub, recovered } = await setup(t);
  const got = [];
  hub.subscribe("g", (n) => got.push([n.epoch, n.offset]));
  const first = await joined(server, "g", 40, "old", [41]);
  await waitFor(() => got.length === 1);
  first.drop();

  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "g", since: 41, epoch: "old" });
  // herald restarted with the memory broker: a new epoch whose offsets start again.
  second.send({ type: "subscribed", group: "g", offset: 2, epoch: "new", recovered: false });
  for (const o of [1, 2, 3, 4]) second.notify("g", o, null, { epoch: "new" });
  await waitFor(() => got.length === 3);

  assert.deepEqual(got, [["old", 41], ["new", 3], ["new", 4]]);
  assert.deepEqual(await recovered.until(() => true), { group: "g", recovered: false });

  // And the next resume uses the new epoch.
  second.close(4100, "slow_consumer");
  const third = await server.nextConnection();
  assert.deepEqual(await third.nextFrame(), { type: "subscribe", group: "g", since: 4, epoch: "new" });
});

test("every group resumes from its own position", async (t) => {
  const { server, hub, recovered } = await setup(t);
  hub.subscribe("a", () => {});
  hub.subscribe("b", () => {});
  const first = await server.nextConnection();
  await first.nextFrame();
  await first.nextFrame();
  first.send({ type: "subscribed", group: "a", offset: 3, epoch: "ea" });
  first.send({ type: "subscribed", group: "b", offset: 100, epoch: "eb" });
  first.notify("b", 101, null, { epoch: "eb" });
  await sleep(30);
  first.close(1012, "service_restart");

  const second = await server.nextConnection();
  const frames = [await second.nextFrame(), await second.nextFrame()];
  assert.deepEqual(frames, [
    { type: "subscribe", group: "a", since: 3, epoch: "ea" },
    { type: "subscribe", group: "b", since: 101, epoch: "eb" },
  ]);
  second.send({ type: "subscribed", group: "a", offset: 3, epoch: "ea", recovered: true });
  second.send({ type: "subscribed", group: "b", offset: 101, epoch: "eb", recovered: true });
  await waitFor(() => recovered.seen.length === 2);
  assert.deepEqual(recovered.seen, [
    { group: "a", recovered: true },
    { group: "b", recovered: true },
  ]);
});

test("the epoch of notify frames alone is enough to resume", async (t) => {
  const { server, hub } = await setup(t);
  hub.subscribe("g", () => {});
  const first = await server.nextConnection();
  await first.nextFrame();
  first.send({ type: "subscribed", group: "g", offset: 0 });
  first.notify("g", 1, null, { epoch: "e9" });
  await sleep(30);
  first.close(1012, "service_restart");

  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "g", since: 1, epoch: "e9" });
});

test("a hub without history (no epoch anywhere) gets a plain subscribe after a reconnect", async (t) => {
  const { server, hub, recovered } = await setup(t);
  const offsets = [];
  hub.subscribe("g", (n) => offsets.push(n.offset));
  const first = await server.nextConnection();
  await first.nextFrame();
  first.send({ type: "subscribed", group: "g", offset: 0 });
  first.notify("g", 1, null);
  await waitFor(() => offsets.length === 1);
  first.close(1012, "service_restart");

  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "g" });
  // The restarted memory hub counts from 1 again: a new start, not a duplicate.
  second.send({ type: "subscribed", group: "g", offset: 0 });
  second.notify("g", 1, null);
  await waitFor(() => offsets.length === 2);
  assert.deepEqual(offsets, [1, 1]);
  assert.deepEqual(recovered.seen, []);
});

test("a recovered field on a first join is not a resume, and starts delivery at its offset", async (t) => {
  const { server, hub, recovered } = await setup(t);
  const offsets = [];
  hub.subscribe("g", (n) => offsets.push(n.offset));
  const conn = await server.nextConnection();
  assert.deepEqual(await conn.nextFrame(), { type: "subscribe", group: "g" });
  conn.send({ type: "subscribed", group: "g", offset: 7, epoch: "e", recovered: false });
  for (const o of [7, 8]) conn.notify("g", o, null, { epoch: "e" });
  await waitFor(() => offsets.length === 1);

  assert.deepEqual(offsets, [8]);
  await sleep(30);
  assert.deepEqual(recovered.seen, [], "nothing was missed: there was nothing to recover");
});

test("a group left before the reconnect is not resumed", async (t) => {
  const { server, hub } = await setup(t);
  const keep = hub.subscribe("keep", () => {});
  const leave = hub.subscribe("leave", () => {});
  const first = await server.nextConnection();
  await first.nextFrame();
  await first.nextFrame();
  leave.unsubscribe();
  assert.deepEqual(await first.nextFrame(), { type: "unsubscribe", group: "leave" });
  first.close(1012, "service_restart");

  const second = await server.nextConnection();
  assert.deepEqual(await second.nextFrame(), { type: "subscribe", group: "keep" });
  await sleep(50);
  assert.equal(second.pending(), 0);
  keep.unsubscribe();
});
