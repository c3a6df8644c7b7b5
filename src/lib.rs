//! herald: a notification hub. WebSocket clients join named groups; backends send events
//! to a group over HTTP (`POST /notify`) and every member receives them — the Django
//! Channels `group_add` / `group_send` model as a standalone service.
//!
//! # Layout
//! - [`config`]: the one `Config` (CLI flags and `HERALD_*` variables) and the types its
//!   flags parse into (`OriginPattern`).
//! - [`auth`]: token verification (`Verifier`, `Claims`, `Grant`) and the pure pattern,
//!   scope and origin checks.
//! - [`telemetry`]: log setup, with span fields written by herald's own cheaper formatters.
//! - [`id`]: the ids herald makes up (request ids, notification ids).
//! - [`hash`]: the randomly keyed hasher of the maps keyed by client-chosen names.
//! - [`metrics`]: the Prometheus metrics, one `Metrics` struct of typed handles.
//! - [`server`]: binds the listener, runs until a shutdown signal, drains.
//! - [`shutdown`]: the SIGTERM/SIGINT trigger.
//! - [`state`]: `AppState`, the one shared handle (a single `Arc`) routes and sessions
//!   get, and `AppState::publish`, the one publish path.
//! - [`protocol`]: the public wire contract: frames and their encoding (`wire`), HTTP
//!   bodies (`http`) and the notify replies written without serde (`reply`), names,
//!   close codes.
//! - [`hub`]: this node's groups, members and local fan-out.
//! - [`broker`]: offsets, epochs, history and delivery to every node with members (memory
//!   by default); `broker::Local` is the one local-delivery path every broker calls;
//!   `broker::history` decides what a resuming client gets.
//! - [`node`]: joins and leaves kept in step with the broker (a group is watched while
//!   it has local members).
//! - [`transport`]: warp routes (one table) served over HTTP/1.1 with read deadlines and
//!   connection caps (`transport::http`), admission, the WebSocket upgrade, one session
//!   task per connection and the client commands it runs.
//! - [`api`]: what the HTTP endpoints do; `api::error` is where every error becomes JSON;
//!   `api::assets` serves the embedded browser client (`/herald.js`) and demo page (`/`).
//!
//! # Flows
//! - **notify**: `transport::routes` matches `POST /notify` → `transport::admission`
//!   checks the backend token → `api::notify` validates → `AppState::publish` →
//!   `node.publish` → `broker.publish` assigns the offset and carries the `Publication`
//!   to every node watching the group → on each, `broker::Local::deliver` encodes the
//!   frame once (`protocol::wire::encode_notify`) and `hub.deliver` writes the shared
//!   bytes straight into a small group's idle sockets, or queues them on each member for
//!   a drain (`hub::drain`) to write (a full queue closes that member with 4100) → each
//!   `transport::session` finishes what a socket did not take, with vectored writes.
//! - **subscribe**: `transport::routes` checks the name in the path,
//!   `transport::admission` the origin and token (`auth::Verifier`), then the token's
//!   right to the group, shutdown and connection limit → `transport::upgrade` opens the
//!   session, which joins its personal group and the group through `node.join` before
//!   answering 101 (`hub.join`; the first local member makes the node watch the group in
//!   the broker and sync its offset) → `transport::commands` handles the client's frames
//!   → live frames until the token's expiry (4102) unless refreshed. The last member's
//!   `node.leave` stops the watch.
//! - **resume** (`?since=&epoch=` or a subscribe frame with them): `transport::resume` →
//!   `node.resume` joins first (live frames queue up), reads the broker's history after,
//!   `broker::history::replay` keeps what precedes the join → `subscribed` and the
//!   replay are put in front of the member's queue.
//! - **shutdown**: `shutdown::signal` → `server::run` cancels the shutdown token → the
//!   listeners stop accepting, idle HTTP connections close at once, every session sends
//!   1012 and ends → `run` returns once all ended or `--drain-timeout` passed.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod hash;
pub mod hub;
pub mod id;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod transport;

pub use config::Config;
pub use server::Server;
