//! `/healthz` (the process is alive) and `/readyz` (it should receive traffic).

use warp::http::StatusCode;
use warp::reply::Response;

use super::{json, ApiError};
use crate::state::AppState;

/// Always 200 while the process serves HTTP.
pub async fn healthz() -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
}

/// 200 when the listener is up, the broker is connected and no shutdown has begun.
pub async fn readyz(state: AppState) -> Result<Response, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    if !state.broker.is_ready() {
        return Err(ApiError::Unavailable(
            crate::broker::BrokerError::Unavailable("broker not connected".into()),
        ));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready" }),
    ))
}
