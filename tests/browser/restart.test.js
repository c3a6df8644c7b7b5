// herald restarted under the demo page while a backend keeps notifying (Redis broker,
// so the group's offsets and history outlive the process): the page resumes, is told
// `recovered`, and shows every notification once, in offset order, with no gap.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { Herald, WAIT_MS, freePort, launchBrowser, sleep, waitForState, waitForSubscribers, waitUntil } from "./support.js";
import { RedisServer, redisAvailable } from "./redis.js";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/**
 * A backend that POSTs /notify to `url` one request at a time, `pace` ms apart (at most
 * `max` requests and `maxMs` ms), each carrying its sequence number. It records the
 * offset of every request herald accepted (202) and the sequence numbers of the others
 * (herald down, connection reset): those were not accepted, though one cut off after
 * herald published it may still have been delivered.
 */
class Backend {
  constructor(url, group, { pace = 30, max = 1000, maxMs = 60000 } = {}) {
    this.accepted = []; // { seq, offset }, in sending order
    this.failed = []; // seq
    this._stopping = false;
    this.done = this._run(url, group, pace, max, Date.now() + maxMs);
  }

  async _run(url, group, pace, max, deadline) {
    for (let seq = 1; seq <= max && !this._stopping && Date.now() < deadline; seq++) {
      try {
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ group, event: "tick", data: { seq } }),
          signal: AbortSignal.timeout(WAIT_MS),
        });
        const body = await res.json();
        if (res.status === 202) this.accepted.push({ seq, offset: body.offset });
        else this.failed.push(seq);
      } catch {
        this.failed.push(seq);
      }
      await sleep(pace); // the pace of the load, not a wait for anything
    }
  }

  /** The highest offset herald accepted so far (0: none). */
  get lastOffset() {
    return this.accepted.at(-1)?.offset ?? 0;
  }

  /** Stops sending and waits for the request in flight. */
  async stop() {
    this._stopping = true;
    await this.done;
  }
}

/** Every WebSocket frame the page sends and receives, parsed, in order. */
function recordFrames(page) {
  const frames = [];
  page.on("websocket", (ws) => {
    const push = (direction) => (f) => {
      try {
        frames.push({ direction, ...JSON.parse(f.payload) });
      } catch {
        // not JSON: herald and herald.js send none
      }
    };
    ws.on("framesent", push("sent"));
    ws.on("framereceived", push("received"));
  });
  return frames;
}

/** The page's log (#log), entry by entry: notifications with offset and data, and the rest by kind. */
async function pageLog(page) {
  return page.$$eval("#log li", (items) =>
    items.map((li) => ({ kind: li.className, text: li.textContent, ...li.dataset })),
  );
}

test("herald restarted under the page while notifications keep coming: every offset once, and recovered", async (t) => {
  if (!redisAvailable(t)) return;
  const redis = await RedisServer.start();
  t.after(() => redis.stop());

  const group = "room:restart";
  // A fixed port, so that the page reconnects to the new process; history for all the
  // backend may send (the page misses far fewer).
  const args = ["--redis-url", redis.url, "--history-size", "1000"];
  let herald = await Herald.start({ port: await freePort(), args });
  t.after(() => herald.stop());
  const page = await browser.newPage();
  t.after(() => page.close());
  const frames = recordFrames(page);
  await page.goto(herald.url(`/?group=${encodeURIComponent(group)}`));
  await waitForState(page, "open");
  await waitForSubscribers(herald, group, 1);

  const backend = new Backend(herald.url("/notify"), group);
  t.after(() => backend.stop());
  const shown = async () => (await pageLog(page)).filter((e) => e.kind === "notify" && e.group === group);
  await waitUntil(async () => (await shown()).length >= 10, "the page shows 10 notifications before the restart");

  // SIGTERM: herald closes the page's socket with 1012 and exits; then the page cannot
  // connect while the new process starts and accepts notifications, so that it misses
  // some whatever its reconnect timing is, and must resume to get them.
  await herald.stop();
  await page.locator('#log li[data-code="1012"]').waitFor({ timeout: WAIT_MS });
  await page.context().setOffline(true);
  const lastBefore = Number((await shown()).at(-1).offset);
  herald = await Herald.start({ port: herald.port, args });
  const firstAfter = backend.lastOffset;
  await waitUntil(() => backend.lastOffset >= firstAfter + 10, "the new herald accepts 10 notifications");
  await page.context().setOffline(false);

  const recovered = page.locator(`#log li[data-recovered][data-group="${group}"]`);
  // The failed attempts while offline grew the page's backoff (full jitter, 30 s at most).
  await recovered.waitFor({ timeout: 30000 + WAIT_MS });
  await waitForState(page, "open");
  // Live delivery goes on after the resume; then the backend stops.
  const resumedAt = backend.lastOffset;
  await waitUntil(() => backend.lastOffset >= resumedAt + 10, "10 more notifications are accepted after the resume");
  await backend.stop();

  // What herald kept for the group (from Redis, through the new process) is the truth
  // the page must match: the offsets 1..N, each once.
  const history = await herald.api("GET", `/groups/${encodeURIComponent(group)}/history?limit=1000`);
  assert.equal(history.status, 200);
  const kept = history.body.notifications;
  const last = history.body.offset;
  assert.deepEqual(
    kept.map((n) => n.offset),
    Array.from({ length: last }, (_, i) => i + 1),
  );
  await waitUntil(async () => Number((await shown()).at(-1).offset) >= last, `the page shows offset ${last}`);

  const log = await pageLog(page);
  const notes = log.filter((e) => e.kind === "notify" && e.group === group);
  assert.deepEqual(
    notes.map((e) => Number(e.offset)),
    kept.map((n) => n.offset),
    "the page shows every offset once, in order, with no gap",
  );
  for (const [i, e] of notes.entries()) {
    assert.ok(e.text.endsWith(JSON.stringify(kept[i].data)), `offset ${e.offset} shows its own data: ${e.text}`);
  }
  // Every notification herald accepted is among them, with the data that was sent; an
  // offset no 202 reported can only be a request cut off by the shutdown.
  for (const { seq, offset } of backend.accepted) assert.deepEqual(kept[offset - 1].data, { seq }, `offset ${offset}`);
  assert.ok(last - backend.accepted.length <= backend.failed.length, "no offset comes from nowhere");

  // The resume: one subscribe with since = the last offset shown before the restart,
  // answered recovered:true, with the missed notifications replayed behind it.
  const resumes = frames.filter((f) => f.direction === "sent" && f.type === "subscribe" && f.since !== undefined);
  assert.equal(resumes.length, 1, JSON.stringify(resumes));
  assert.equal(resumes[0].since, lastBefore);
  const answer = frames.find((f) => f.direction === "received" && f.type === "subscribed" && f.recovered !== undefined);
  assert.equal(answer?.recovered, true, "the resume is answered with recovered:true");
  assert.ok(answer.offset >= firstAfter + 10, `replayed ${lastBefore + 1}..${answer.offset}`);
  t.diagnostic(
    `accepted ${backend.accepted.length}, not accepted ${backend.failed.length}; resumed since ${lastBefore}, replayed up to ${answer.offset}`,
  );

  // The page says so, after the restart's 1012, and is open again.
  assert.deepEqual(
    log.filter((e) => e.recovered !== undefined).map((e) => [e.group, e.recovered]),
    [[group, "true"]],
  );
  const at = (pred) => log.findIndex(pred);
  assert.ok(at((e) => e.code === "1012") < at((e) => e.recovered === "true"), "recovered comes after the 1012");
  assert.match(await recovered.textContent(), /recovered everything missed/);
  assert.equal(await page.getAttribute("#state", "data-state"), "open");
  assert.equal(await page.textContent("#close-info"), "");
});
