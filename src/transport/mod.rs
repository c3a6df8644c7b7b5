//! How bytes get in and out: warp routes, the WebSocket upgrade and one session task per
//! connection. All socket I/O lives here.

mod admission;
mod connection;
mod observe;
mod resume;
mod routes;
mod session;
mod upgrade;

pub use observe::REQUEST_ID;
pub use routes::{metrics_routes, routes};
