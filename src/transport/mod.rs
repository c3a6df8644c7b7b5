//! How bytes get in and out: warp routes, the WebSocket upgrade and one session task per
//! connection. All socket I/O lives here.

mod admission;
mod commands;
mod connection;
mod observe;
mod routes;
mod session;
mod upgrade;

pub use observe::REQUEST_ID;
pub use routes::{metrics_routes, routes};
