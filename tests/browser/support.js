// Shared by the browser tests: a real herald process, headless Chromium, HS256 tokens.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** The herald binary under test: $HERALD_BIN, or the release build CI makes. */
export const HERALD_BIN = process.env.HERALD_BIN ?? join(ROOT, "target/release/herald");

/** Debian's Chromium; playwright-core downloads no browser of its own. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** How long a step waits for the page or herald before the test fails. */
export const WAIT_MS = 15000;

/** A free loopback port (herald is restarted on the same one, so it is chosen here). */
export async function freePort() {
  const server = createServer();
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** A herald process on 127.0.0.1:`port`. */
export class Herald {
  /** Starts herald and waits until it answers /healthz. */
  static async start({ port, args = [], env = {} } = {}) {
    const herald = new Herald(port ?? (await freePort()), args, env);
    await herald.started();
    return herald;
  }

  constructor(port, args, env) {
    this.port = port;
    this.args = args;
    this.env = env;
    this.output = "";
    this.child = spawn(HERALD_BIN, ["--listen", `127.0.0.1:${port}`, ...args], {
      env: { ...process.env, RUST_LOG: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.on("data", (chunk) => {
        this.output = (this.output + chunk).slice(-20000);
      });
    }
    this.exited = new Promise((ok) => this.child.on("exit", (code, signal) => ok({ code, signal })));
  }

  async started() {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`herald exited at start:\n${this.output}`);
      try {
        if ((await fetch(this.url("/healthz"))).ok) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`herald did not answer /healthz:\n${this.output}`);
      await sleep(50);
    }
  }

  /** `http://127.0.0.1:<port><path>`. */
  url(path) {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** A JSON request to herald's API; resolves to { status, body }. */
  async api(method, path, body, token) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(this.url(path), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  }

  /** The value of one unlabelled (or exactly labelled) sample in /metrics. */
  async metric(sample) {
    const text = await (await fetch(this.url("/metrics"))).text();
    const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
    return line === undefined ? undefined : Number(line.slice(sample.length + 1));
  }

  /** Stops herald with SIGTERM (it sends 1012 to every connection) and waits for its exit. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), WAIT_MS);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  /** Stops this herald and starts a new one with the same port, flags and environment. */
  async restart() {
    await this.stop();
    return Herald.start({ port: this.port, args: this.args, env: this.env });
  }
}

/** Headless Chromium with a fresh profile; `close()` also removes the profile. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "herald-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 680 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    context,
    async newPage() {
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** An HS256 JWT over `claims`, signed with `secret` (node's crypto, no library). */
export function mintToken(secret, claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  const signature = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${signature}`;
}

/** Seconds since the Unix epoch. */
export function now() {
  return Math.floor(Date.now() / 1000);
}

export function sleep(ms) {
  return new Promise((ok) => setTimeout(ok, ms));
}

/**
 * Polls `check` (sync or async) until it returns a truthy value, and returns that value;
 * after `timeout` ms fails, saying `what` (a string, or a function asked at that moment).
 */
export async function waitUntil(check, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting until ${typeof what === "function" ? what() : what}`);
    await sleep(25);
  }
}

/** Waits until `herald` counts `n` members in `group` (asking with `token` when given); returns the group. */
export async function waitForSubscribers(herald, group, n, token) {
  let seen;
  return waitUntil(async () => {
    const { body } = await herald.api("GET", `/groups/${encodeURIComponent(group)}`, undefined, token);
    seen = body.subscribers;
    return seen === n && body;
  }, () => `${group} has ${n} subscribers (it has ${seen})`);
}

/** The offsets the demo page shows for `group`, in page order. */
export async function shownOffsets(page, group) {
  return page.$$eval(`#log li.notify[data-group="${group}"]`, (items) => items.map((li) => Number(li.dataset.offset)));
}

/** Waits until the page's connection state badge reads `state`. */
export async function waitForState(page, state) {
  await page.waitForSelector(`#state[data-state="${state}"]`, { timeout: WAIT_MS });
}
