//! `/healthz` (the process is alive), `/readyz` (it should receive traffic) and
//! `/metrics` (Prometheus text format).

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::{json, ApiError};
use crate::state::AppState;

/// Always 200 while the process serves HTTP.
pub async fn healthz() -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
}

/// The Prometheus scrape. Gauges of current sizes (connections, memberships, groups)
/// are read here, once per scrape, instead of being kept up to date on every join.
pub async fn metrics(state: AppState) -> Result<Response, ApiError> {
    let m = &state.metrics;
    m.connections.set(state.connections_open() as i64);
    let (groups, subscriptions) = state.hub.counts();
    m.groups.set(groups as i64);
    m.subscriptions.set(subscriptions as i64);
    let history = state.broker.history_usage();
    m.history_entries.set(history.entries as i64);
    m.history_bytes.set(history.bytes as i64);
    let mut res = m.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    Ok(res)
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
