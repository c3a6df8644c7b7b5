//! `POST /users/{user}/close`: end every connection of one user.

use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{body, json, ApiError};
use crate::protocol::close::application_close;
use crate::protocol::{CloseRequest, Closed, UserId};
use crate::state::AppState;

/// Closes every connection of `user` (all groups, all tabs) with the requested code and
/// reason, after what is already queued for each; the same code rules as group close.
pub async fn close(user: UserId, state: AppState, raw: Bytes) -> Result<Response, ApiError> {
    let req: CloseRequest = body::parse(&raw)?;
    let close = application_close(req.code, &req.reason).map_err(ApiError::InvalidClose)?;
    let closed = state.broker.close_user(&user, close).await?;
    Ok(json(StatusCode::OK, &Closed { closed }))
}
