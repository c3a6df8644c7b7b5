//! How bytes get in and out: warp routes, the WebSocket upgrade and one session task per
//! connection. All socket I/O lives here.
//!
//! - `router`: what each request goes through: `observe`, then a hot route or the table.
//! - `routes`: the URL table, one small function per route, each with its template.
//! - `hot`: `POST /notify` and `POST /notify/batch` answered without warp's filter tree.
//! - `observe`: request span, request id and HTTP metrics around every route.
//! - `admission`: who may come in (origin, token, group right, shutdown, limit), with
//!   typed refusals that carry their metrics reason.
//! - `upgrade`: the hand-made WebSocket handshake: admit, open the session, answer 101.
//! - `session`: the socket loop of one connection (queue, frames, heartbeat, expiry).
//! - `log_context`: the upgrade request's id and route, kept compactly for a
//!   connection's log lines.
//! - `commands`: what client frames do (subscribe, unsubscribe, publish, refresh), with
//!   no socket, so it is unit-tested on its own.
//! - `read_ahead`: large socket reads under tungstenite's small read buffer.
//! - `connection`: the socket's writes (vectored batches, replies) and its closing.
//! - `http`: serves the routes over HTTP/1.1 ourselves (hyper) for read deadlines,
//!   bounded request heads and the cap on plain-HTTP connections.

mod admission;
mod commands;
mod connection;
mod hot;
mod http;
mod log_context;
mod observe;
mod read_ahead;
mod resume;
mod router;
mod routes;
mod session;
mod upgrade;

pub use http::{remote, serve, HttpLimits, ReadDeadlines};
pub use observe::REQUEST_ID;
pub use router::Router;
pub use routes::{api_routes, metrics_routes, routes};
