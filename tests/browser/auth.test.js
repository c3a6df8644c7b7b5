// Token auth from a real browser: the token travels in the herald.bearer subprotocol
// (never the URL), and herald.js refreshes it before it expires.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { Herald, WAIT_MS, launchBrowser, mintToken, now, sleep, waitForState, waitForSubscribers } from "./support.js";

const SECRET = randomBytes(32).toString("hex");
const BACKEND = () => mintToken(SECRET, { sub: "backend", exp: now() + 600, scope: "notify" });

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

async function authHerald(t) {
  // No leeway: the connection is closed with 4102 exactly at the token's exp.
  const herald = await Herald.start({ args: ["--jwt-leeway", "0s"], env: { HERALD_JWT_SECRET: SECRET } });
  t.after(() => herald.stop());
  return herald;
}

test("a pasted token authenticates the browser through the subprotocol, never the URL", async (t) => {
  const herald = await authHerald(t);
  const page = await browser.newPage();
  t.after(() => page.close());
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await page.goto(herald.url("/?group=room:7"));

  // Without a token herald refuses the upgrade (401): the page keeps trying, never open.
  await page.locator('#log li[data-code="1006"]').first().waitFor({ timeout: WAIT_MS });
  const token = mintToken(SECRET, { sub: "42", exp: now() + 600, groups: ["room:*"] });
  await page.fill('#token-form input[name="token"]', token);
  await page.click('#token-form button[type="submit"]');
  await waitForState(page, "open");

  const group = await waitForSubscribers(herald, "room:7", 1, BACKEND());
  assert.deepEqual(group.users, ["42"], "herald knows the browser as the token's sub");
  assert.ok(sockets.length > 0);
  for (const url of sockets) {
    assert.equal(url, herald.url("/ws").replace("http", "ws"), "no token in any WebSocket URL");
  }

  const res = await herald.api("POST", "/notify", { group: "room:7", data: "for members only" }, BACKEND());
  assert.equal(res.status, 202);
  await page.locator('#log li.notify[data-group="room:7"][data-offset="1"]').waitFor({ timeout: WAIT_MS });
});

test("herald.js refreshes a token before it expires, so the connection outlives the first token", async (t) => {
  const herald = await authHerald(t);
  const page = await browser.newPage();
  t.after(() => page.close());
  await page.goto(herald.url("/?group=room:8"));
  const firstExp = now() + 6;
  const first = mintToken(SECRET, { sub: "42", exp: firstExp, groups: ["room:*"] });
  await page.fill('#token-form input[name="token"]', first);
  await page.click('#token-form button[type="submit"]');
  await waitForState(page, "open");
  // Closes so far are the token-less attempts herald refused (401) before the paste.
  const closesBefore = await page.locator("#log li[data-code]").count();

  // The page's getToken returns what is in the token field: put a longer-lived token
  // there, as an application would fetch one. It may also notify (scope) from the form.
  const second = mintToken(SECRET, { sub: "42", exp: now() + 600, groups: ["room:*"], scope: "notify" });
  await page.fill('#token-form input[name="token"]', second);

  // Past the first token's exp (herald would close with 4102 at exp + 0 s leeway).
  while (now() <= firstExp + 1) await sleep(200);
  assert.equal(await herald.metric('herald_client_frames_total{type="refresh"}'), 1);
  assert.equal(await page.locator("#log li[data-code]").count(), closesBefore, "no close since the token");
  assert.equal(await page.getAttribute("#state", "data-state"), "open");

  // Still a live member: the form's POST /notify (with the pasted token) comes back.
  await page.fill('#send-form input[name="group"]', "room:8");
  await page.click('#send-form button[type="submit"]');
  await page.locator('#log li.notify[data-group="room:8"][data-offset="1"]').waitFor({ timeout: WAIT_MS });
  assert.match(await page.textContent("#send-result"), /^202 /);
});
