//! `GET /groups/{group}/history`: a group's kept notifications, for backends (scope
//! `notify`) that want to fill a gap themselves.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{json, ApiError};
use crate::protocol::wire::text_payload;
use crate::protocol::{Epoch, GroupName, Offset, MAX_SINCE};
use crate::state::AppState;

/// Most notifications one history request returns.
pub const MAX_HISTORY_LIMIT: usize = 1000;

/// Query of `GET /groups/{group}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only notifications after this offset (default 0: all that are kept).
    pub since: Option<Offset>,
    /// How many to return at most (1–1000, default 100).
    pub limit: Option<usize>,
}

#[derive(Serialize)]
struct History<'a> {
    group: &'a str,
    epoch: Epoch,
    offset: Offset,
    notifications: Vec<&'a RawValue>,
}

/// The group's epoch and latest offset, and the kept notify frames after `since`,
/// oldest first: exactly what members received, targeted ones included (the caller may
/// publish to anyone, so it may read what was published).
pub async fn get(
    group: GroupName,
    state: AppState,
    query: HistoryQuery,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be 1 to {MAX_HISTORY_LIMIT}"
        )));
    }
    let since = query.since.unwrap_or(0);
    if since > MAX_SINCE {
        return Err(ApiError::InvalidQuery(format!(
            "since must be 0 to {MAX_SINCE}"
        )));
    }
    let read = state.broker.history(&group, since, limit).await?;
    let payloads: Vec<_> = read
        .entries
        .iter()
        .map(|e| text_payload(&e.frame))
        .collect();
    let notifications = payloads
        .iter()
        .map(|p| {
            // Frames herald built hold JSON text; anything else is a bug, logged by the 500.
            let text = std::str::from_utf8(p).map_err(|_| ApiError::Internal)?;
            serde_json::from_str::<&RawValue>(text).map_err(|_| ApiError::Internal)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let body = History {
        group: group.as_str(),
        epoch: read.position.epoch,
        offset: read.position.offset,
        notifications,
    };
    Ok(json(StatusCode::OK, &body))
}
