//! What the HTTP endpoints do: typed request in, typed reply out. Routing lives in
//! `transport::routes`; errors map to responses only in [`error`].

pub mod assets;
pub mod batch;
pub mod body;
pub mod error;
pub mod groups;
pub mod health;
pub mod history;
pub mod notify;
pub mod users;

use serde::Serialize;
use warp::http::header::CONTENT_TYPE;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

pub use error::ApiError;

/// A JSON reply with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// A reply with `status` whose body is JSON text already written (see
/// `protocol::reply`). A buffer filled to its capacity becomes the body without another
/// allocation.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}
