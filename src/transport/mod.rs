//! How bytes get in and out: warp routes, the WebSocket upgrade and one session task per
//! connection. All socket I/O lives here.

mod admission;
mod connection;
mod routes;
mod session;
mod upgrade;

pub use routes::routes;
