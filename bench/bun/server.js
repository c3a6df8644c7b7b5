// bun-server: Bun's built-in WebSocket pub/sub (uWebSockets underneath) speaking
// herald's URL contract for what herald-bench uses, as a second yardstick beside
// reference-server:
//
//   GET  /ws/{group}   upgrade; a member of {group} (a Bun topic) from the `open` callback
//   POST /notify       {"group","event","data"} -> 202 {"id","offset","recipients"}; every
//                      member gets {"type":"notify","group","event","offset","data"}
//   POST /notify/batch {"notifications":[...]} -> 202 {"results":[...]}, items in order
//   GET  /healthz      200 {"status":"ok"}
//
// It is what a user picking Bun instead of herald would write: one JSON.parse per
// request, one JSON.stringify per notification and `server.publish(topic, frame)`,
// which writes into every subscriber's socket inside the call (corked) and buffers only
// when a socket pushes back. Like herald, a subscriber that falls too far behind is
// closed (backpressureLimit + closeOnBackpressureLimit) rather than buffered forever.
// None of herald's other features (auth, limits, frames from clients, close API).
//
//   bun bench/bun/server.js --listen 127.0.0.1:0
// prints `bun-server listening addr=127.0.0.1:PORT` once it accepts connections.

const NAME = /^[A-Za-z0-9_.:-]{1,100}$/;

function listenArg() {
  const i = process.argv.indexOf("--listen");
  const value = i >= 0 ? process.argv[i + 1] : "127.0.0.1:8091";
  const at = value.lastIndexOf(":");
  return { hostname: value.slice(0, at), port: Number(value.slice(at + 1)) };
}

const offsets = new Map();
let nextId = 1;

function reply(status, body) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function invalid(error, message) {
  return { error: { status: 400, body: { error, message } } };
}

// Checks one notify body; returns the published reply or an error.
function check(n) {
  if (n === null || typeof n !== "object" || Array.isArray(n)) {
    return invalid("invalid_request", "the body must be a JSON object");
  }
  if (typeof n.group !== "string" || !NAME.test(n.group)) {
    return invalid("invalid_group", "bad group name");
  }
  const event = n.event ?? "message";
  if (typeof event !== "string" || !NAME.test(event)) {
    return invalid("invalid_event", "bad event name");
  }
  if (!("data" in n)) {
    return invalid("invalid_request", "missing field `data`");
  }
  return { ok: { group: n.group, event, data: n.data } };
}

function publish(server, { group, event, data }) {
  const offset = (offsets.get(group) ?? 0) + 1;
  offsets.set(group, offset);
  const frame = JSON.stringify({ type: "notify", group, event, offset, data });
  server.publish(group, frame);
  const id = (nextId++).toString(16).padStart(16, "0");
  return { id, offset, recipients: server.subscriberCount(group) };
}

async function body(req) {
  try {
    return { ok: await req.json() };
  } catch (e) {
    return invalid("invalid_json", String(e));
  }
}

const server = Bun.serve({
  ...listenArg(),
  async fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path.startsWith("/ws/")) {
      let group = "";
      try {
        group = decodeURIComponent(path.slice(4));
      } catch {
        // A malformed escape is a bad name like any other.
      }
      if (!NAME.test(group)) {
        return reply(400, { error: "invalid_group", message: "bad group name" });
      }
      if (server.upgrade(req, { data: { group } })) {
        return undefined;
      }
      return reply(426, { error: "upgrade_required", message: "WebSocket upgrade needed" });
    }
    if (req.method === "POST" && path === "/notify") {
      const parsed = await body(req);
      const checked = parsed.error ? parsed : check(parsed.ok);
      if (checked.error) {
        return reply(checked.error.status, checked.error.body);
      }
      return reply(202, publish(server, checked.ok));
    }
    if (req.method === "POST" && path === "/notify/batch") {
      const parsed = await body(req);
      if (parsed.error) {
        return reply(parsed.error.status, parsed.error.body);
      }
      const items = parsed.ok?.notifications;
      if (!Array.isArray(items) || items.length < 1 || items.length > 1000) {
        return reply(400, { error: "invalid_request", message: "1 to 1000 notifications" });
      }
      const checked = [];
      for (const [i, item] of items.entries()) {
        const c = check(item);
        if (c.error) {
          c.error.body.message = `notifications[${i}]: ${c.error.body.message}`;
          return reply(c.error.status, c.error.body);
        }
        checked.push(c.ok);
      }
      return reply(202, { results: checked.map((n) => publish(server, n)) });
    }
    if (req.method === "GET" && path === "/healthz") {
      return reply(200, { status: "ok" });
    }
    return reply(404, { error: "not_found", message: "no such endpoint" });
  },
  websocket: {
    open(ws) {
      ws.subscribe(ws.data.group);
    },
    message() {},
    // herald's --send-queue is 1024 frames; a few MiB is the same order for the bench's
    // frames. Past it the subscriber is closed, as herald closes a slow consumer.
    backpressureLimit: 4 * 1024 * 1024,
    closeOnBackpressureLimit: true,
    maxPayloadLength: 64 * 1024,
    idleTimeout: 120,
    sendPings: true,
    perMessageDeflate: false,
  },
});

console.log(`bun-server listening addr=${server.hostname}:${server.port}`);
