// Real Redis for the browser tests that need the Redis broker: a redis-server the test
// starts on a free port and stops by PID (as tests/e2e/redis_server.rs does for Rust).
//
// Without redis-server on the PATH such a test prints a loud SKIP line and is skipped,
// unless HERALD_REQUIRE_REDIS=1 (set by .ci/run), which makes a missing Redis a failure.

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { WAIT_MS, freePort, waitUntil } from "./support.js";

/** Whether test `t` can have a redis-server; skips `t` (or throws under HERALD_REQUIRE_REDIS=1) when not. */
export function redisAvailable(t) {
  if (spawnSync("redis-server", ["--version"]).status === 0) return true;
  if (process.env.HERALD_REQUIRE_REDIS === "1") throw new Error("HERALD_REQUIRE_REDIS=1 but redis-server is not installed");
  console.error(`\n*** SKIP ${t.name}: redis-server is not installed (set HERALD_REQUIRE_REDIS=1 to fail instead) ***\n`);
  t.skip("redis-server is not installed");
  return false;
}

/** One redis-server process on 127.0.0.1, without persistence. */
export class RedisServer {
  /** Starts one on a free port and waits until it answers PING. */
  static async start() {
    const server = new RedisServer(await freePort());
    try {
      await waitUntil(() => server.exited || server.ping(), "redis-server answers PING");
      if (server.exited) throw new Error(`redis-server exited at start:\n${server.output}`);
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  constructor(port) {
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), "herald-redis-"));
    this.output = "";
    this.exited = false;
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir];
    this.child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      stream.on("data", (chunk) => {
        this.output = (this.output + chunk).slice(-5000);
      });
    }
    this.exit = new Promise((ok) =>
      this.child.on("exit", () => {
        this.exited = true;
        ok();
      }),
    );
  }

  /** `redis://127.0.0.1:<port>`, for herald's --redis-url. */
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Whether the server answers PING with PONG (a plain RESP exchange, no client library). */
  ping() {
    return new Promise((ok) => {
      const socket = connect(this.port, "127.0.0.1");
      let reply = "";
      const done = (result) => {
        socket.destroy();
        ok(result);
      };
      socket.setTimeout(1000, () => done(false));
      socket.on("error", () => done(false));
      socket.on("connect", () => socket.write("PING\r\n"));
      socket.on("data", (chunk) => {
        reply += chunk;
        if (reply.includes("\r\n")) done(reply.startsWith("+PONG"));
      });
    });
  }

  /** Stops the server by its PID (SIGKILL: nothing of it is kept) and removes its directory. */
  async stop() {
    if (!this.exited) {
      this.child.kill("SIGKILL");
      await Promise.race([this.exit, new Promise((ok) => setTimeout(ok, WAIT_MS))]);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
