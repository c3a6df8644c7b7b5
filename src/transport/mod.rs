//! How bytes get in and out: warp routes, the WebSocket upgrade and one session task per
//! connection. All socket I/O lives here.

mod admission;
mod connection;
mod http;
mod observe;
mod routes;
mod session;
mod upgrade;

pub use http::{remote, serve, HttpLimits, ReadDeadlines};
pub use observe::REQUEST_ID;
pub use routes::{api_routes, metrics_routes, routes};
