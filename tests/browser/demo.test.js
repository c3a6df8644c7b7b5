// The demo page in headless Chromium against a real herald: live notifications, close
// codes (stop on a backend's 4321, reconnect after a 1012 restart), the screenshot.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";

import { Herald, ROOT, WAIT_MS, launchBrowser, shownOffsets, sleep, waitForState, waitForSubscribers } from "./support.js";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A herald, and the demo page open on it in group `group`, connected and subscribed. */
async function pageIn(t, group) {
  const herald = await Herald.start();
  t.after(() => herald.stop());
  const page = await browser.newPage();
  t.after(() => page.close());
  await page.goto(herald.url(`/?group=${encodeURIComponent(group)}`));
  await waitForState(page, "open");
  await waitForSubscribers(herald, group, 1);
  return { herald, page };
}

test("the demo page connects and shows a backend's POST /notify live, with its offset", async (t) => {
  const { herald, page } = await pageIn(t, "room:1");

  const res = await herald.api("POST", "/notify", { group: "room:1", event: "chat.message", data: { text: "from the backend" } });
  assert.equal(res.status, 202);

  const item = page.locator('#log li.notify[data-offset="1"]');
  await item.waitFor({ timeout: WAIT_MS });
  assert.match(await item.textContent(), /#1 room:1 chat\.message \{"text":"from the backend"\}/);
  assert.equal(await item.getAttribute("data-event"), "chat.message");
});

test("the page's own form sends a notification through POST /notify (auth off)", async (t) => {
  const { page } = await pageIn(t, "room:2");
  await page.fill('#send-form input[name="group"]', "room:2");
  await page.fill('#send-form input[name="data"]', '{"text":"typed on the page"}');
  await page.click('#send-form button[type="submit"]');

  await page.locator('#log li.notify[data-group="room:2"][data-offset="1"]').waitFor({ timeout: WAIT_MS });
  assert.match(await page.textContent("#send-result"), /^202 \{"id":/);
  assert.deepEqual(await shownOffsets(page, "room:2"), [1]);
});

test("a group close with 4321 shows code and reason, and the page does not reconnect", async (t) => {
  const { herald, page } = await pageIn(t, "room:3");
  const accepted = await herald.metric("herald_connections_accepted_total");

  const res = await herald.api("POST", "/groups/room:3/close", { code: 4321, reason: "room deleted" });
  assert.deepEqual(res, { status: 200, body: { closed: 1 } });

  await waitForState(page, "closed");
  assert.equal(await page.textContent("#close-info"), "closed 4321 room deleted (stopped)");
  const entry = page.locator('#log li[data-code="4321"]');
  assert.equal(await entry.getAttribute("data-reason"), "room deleted");
  assert.equal(await entry.getAttribute("data-reconnecting"), "false");
  // Four times the first backoff ceiling: a reconnecting client would be back by now.
  await sleep(2000);
  assert.equal(await herald.metric("herald_connections_accepted_total"), accepted);
  assert.equal(await page.getAttribute("#state", "data-state"), "closed");
});

test("when herald restarts (1012) the page reconnects, joins again and gets what is sent next", async (t) => {
  let { herald, page } = await pageIn(t, "room:4");
  await herald.api("POST", "/notify", { group: "room:4", data: "before" });
  await page.locator('#log li.notify[data-offset="1"]').waitFor({ timeout: WAIT_MS });

  herald = await herald.restart(); // SIGTERM: every connection gets 1012, then a new process
  t.after(() => herald.stop());

  const restartEntry = page.locator('#log li[data-code="1012"]');
  await restartEntry.waitFor({ timeout: WAIT_MS });
  assert.equal(await restartEntry.getAttribute("data-reason"), "service_restart");
  assert.equal(await restartEntry.getAttribute("data-reconnecting"), "true");
  await waitForState(page, "open");
  await waitForSubscribers(herald, "room:4", 1);

  // The memory broker's offsets start again in the new process.
  await herald.api("POST", "/notify", { group: "room:4", data: "after" });
  await page.waitForFunction(() => document.querySelectorAll('#log li.notify[data-group="room:4"]').length === 2, null, {
    timeout: WAIT_MS,
  });
  assert.match(await page.locator("#log li.notify").last().textContent(), /"after"/);
});

test("screenshot of the demo page (target/browser/demo.png)", async (t) => {
  const { herald, page } = await pageIn(t, "room:1");
  await page.click('#join-form button[type="submit"]'); // already in room:1: no second chip
  await page.fill('#join-form input[name="group"]', "news");
  await page.click('#join-form button[type="submit"]');
  await waitForSubscribers(herald, "news", 1);
  for (const [group, event, data] of [
    ["room:1", "chat.message", { user: "ada", text: "hello, room" }],
    ["news", "story.published", { id: 17, title: "herald ships a browser client" }],
    ["room:1", "chat.message", { user: "lin", text: "hi ada" }],
  ]) {
    assert.equal((await herald.api("POST", "/notify", { group, event, data })).status, 202);
  }
  await page.waitForFunction(() => document.querySelectorAll("#log li.notify").length === 3, null, { timeout: WAIT_MS });

  const dir = join(ROOT, "target/browser");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "demo.png");
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(statSync(file).size > 10000, "a real screenshot, not an empty image");
  if (process.env.HERALD_UPDATE_SCREENSHOT === "1") copyFileSync(file, join(ROOT, "clients/js/demo.png"));
});
