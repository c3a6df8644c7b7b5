//! What the HTTP endpoints do: typed request in, typed reply out. Routing lives in
//! `transport::routes`; errors map to responses only in [`error`].

pub mod assets;
pub mod body;
pub mod error;
pub mod groups;
pub mod health;
pub mod notify;
pub mod users;

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

pub use error::ApiError;

use crate::protocol::{GroupName, UserId};

/// A JSON reply with `status`.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// Validates a group name taken from the URL path (percent-decoded first, since some
/// clients encode `:`).
pub fn group_from_path(raw: &str) -> Result<GroupName, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    GroupName::parse(&decoded).map_err(ApiError::InvalidGroup)
}

/// Validates a user id taken from the URL path (percent-decoded first).
pub fn user_from_path(raw: &str) -> Result<UserId, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    UserId::parse(&decoded).map_err(ApiError::InvalidUser)
}
