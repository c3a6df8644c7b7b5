//! `GET /groups`, `GET /groups/{group}`, `POST /groups/{group}/close`.

use bytes::Bytes;
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{body, json, ApiError};
use crate::protocol::close::application_close;
use crate::protocol::{CloseRequest, Closed, GroupInfo, GroupList, GroupName, GroupSummary};
use crate::state::AppState;

/// Longest list `GET /groups` (groups) and `GET /groups/{group}` (users) return.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Query of `GET /groups` and `GET /groups/{group}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// How many entries to list (1–1000, default 100).
    pub limit: Option<usize>,
}

impl ListQuery {
    /// The requested limit, checked.
    fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidQuery(format!(
                "limit must be 1 to {MAX_LIST_LIMIT}"
            )));
        }
        Ok(limit)
    }
}

/// Groups with members (on every node the broker counts), by name, with their
/// subscriber counts.
pub async fn list(state: AppState, query: ListQuery) -> Result<Response, ApiError> {
    let (groups, total) = state.broker.groups(query.limit()?).await?;
    let groups = groups
        .into_iter()
        .map(|(g, n)| GroupSummary {
            group: g.to_string(),
            subscribers: n,
        })
        .collect();
    Ok(json(StatusCode::OK, &GroupList { groups, total }))
}

/// One group's subscriber count, latest offset and (up to `limit`) distinct users.
pub async fn get(
    group: GroupName,
    state: AppState,
    query: ListQuery,
) -> Result<Response, ApiError> {
    let limit = query.limit()?;
    let offset = state.broker.position(&group).await?.offset;
    let count = state.broker.group_count(&group, limit).await?;
    let info = GroupInfo {
        subscribers: count.subscribers,
        users: count.users,
        group: group.to_string(),
        offset,
    };
    Ok(json(StatusCode::OK, &info))
}

/// Closes every connection in the group with the requested code and reason.
pub async fn close(group: GroupName, state: AppState, raw: Bytes) -> Result<Response, ApiError> {
    let req: CloseRequest = body::parse(&raw)?;
    let close = application_close(req.code, &req.reason).map_err(ApiError::InvalidClose)?;
    let closed = state.broker.close_group(&group, close).await?;
    Ok(json(StatusCode::OK, &Closed { closed }))
}
