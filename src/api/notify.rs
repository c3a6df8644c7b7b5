//! `POST /notify`: a Channels `group_send` for backends.

use std::collections::HashSet;

use bytes::Bytes;
use serde_json::value::RawValue;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{body, json, ApiError};
use crate::metrics::Via;
use crate::protocol::{
    EventName, GroupDelivery, GroupName, NotifyRequest, NotifyResponse, Publication, Text, UserId,
};
use crate::state::AppState;

/// Most groups one notify may target.
pub const MAX_TARGET_GROUPS: usize = 100;

/// Most users one notify may target.
pub const MAX_TARGET_USERS: usize = 1000;

/// A `POST /notify` body that passed every check, ready to publish. `data` is still
/// borrowed from the request body.
#[derive(Debug)]
pub struct Notification<'a> {
    targets: Vec<GroupName>,
    /// Given as `group` (the single-group reply) rather than `groups`.
    single: bool,
    event: EventName,
    users: Option<HashSet<UserId>>,
    data: &'a RawValue,
}

impl<'a> Notification<'a> {
    /// Parses and validates a `POST /notify` body; nothing is published yet.
    pub fn parse(raw: &'a [u8]) -> Result<Self, ApiError> {
        Self::validate(body::parse(raw)?)
    }

    /// Validates a parsed `POST /notify` body (also one item of a batch).
    pub fn validate(req: NotifyRequest<'a>) -> Result<Self, ApiError> {
        let (targets, single) = targets(req.group, req.groups)?;
        let event = match req.event {
            Some(e) => EventName::parse(&e.0).map_err(ApiError::InvalidEvent)?,
            None => EventName::default_event(),
        };
        let users = req.users.map(users).transpose()?;
        Ok(Self {
            targets,
            single,
            event,
            users,
            data: req.data,
        })
    }

    /// Publishes to each target group in order through [`AppState::publish`] (only to
    /// the listed users' connections when `users` was given) and builds the reply
    /// (see `broker` for what `recipients` counts).
    pub async fn publish(&self, state: &AppState) -> Result<NotifyResponse, ApiError> {
        // The per-group list only for the `groups` form: a single-group reply needs
        // no copy of the group's name.
        let mut deliveries = (!self.single).then(|| Vec::with_capacity(self.targets.len()));
        let (mut recipients, mut first_offset) = (0, None);
        for group in &self.targets {
            let publication = Publication {
                group: group.clone(),
                event: self.event.clone(),
                offset: 0,
                epoch: Default::default(),
                users: self.users.clone(),
                data: self.data.to_owned(),
            };
            let published = state.publish(publication).await?;
            recipients += published.recipients;
            first_offset.get_or_insert(published.offset);
            if let Some(list) = deliveries.as_mut() {
                list.push(GroupDelivery {
                    group: group.to_string(),
                    offset: published.offset,
                    recipients: published.recipients,
                });
            }
        }
        Ok(NotifyResponse {
            id: uuid::Uuid::new_v4().simple().to_string(),
            offset: if self.single { first_offset } else { None },
            recipients,
            groups: deliveries,
        })
    }
}

/// `POST /notify`: publishes the event to each target group and reports offsets and
/// local recipients.
pub async fn notify(state: AppState, raw: Bytes) -> Result<Response, ApiError> {
    let notification = Notification::parse(&raw)?;
    let reply = notification.publish(&state).await?;
    state.metrics.notifications_accepted(Via::Notify, 1);
    Ok(json(StatusCode::ACCEPTED, &reply))
}

/// Validates `users`: 1 to [`MAX_TARGET_USERS`] valid ids (repeats are harmless).
fn users(list: Vec<Text<'_>>) -> Result<HashSet<UserId>, ApiError> {
    if list.is_empty() || list.len() > MAX_TARGET_USERS {
        return Err(ApiError::InvalidRequest(format!(
            "`users` must list 1 to {MAX_TARGET_USERS} users, got {}",
            list.len()
        )));
    }
    list.iter()
        .map(|u| UserId::parse(&u.0).map_err(ApiError::InvalidUser))
        .collect()
}

/// Validates `group` / `groups`: exactly one of them, valid names, no repeats.
fn targets(
    group: Option<Text<'_>>,
    groups: Option<Vec<Text<'_>>>,
) -> Result<(Vec<GroupName>, bool), ApiError> {
    match (group, groups) {
        (Some(g), None) => Ok((
            vec![GroupName::parse(&g.0).map_err(ApiError::InvalidGroup)?],
            true,
        )),
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_TARGET_GROUPS {
                return Err(ApiError::InvalidRequest(format!(
                    "`groups` must list 1 to {MAX_TARGET_GROUPS} groups, got {}",
                    list.len()
                )));
            }
            let mut names = Vec::with_capacity(list.len());
            for Text(raw) in &list {
                let name = GroupName::parse(raw).map_err(ApiError::InvalidGroup)?;
                if names.contains(&name) {
                    return Err(ApiError::InvalidRequest(format!(
                        "group {raw:?} is listed twice in `groups`"
                    )));
                }
                names.push(name);
            }
            Ok((names, false))
        }
        (Some(_), Some(_)) => Err(ApiError::InvalidRequest(
            "give either `group` or `groups`, not both".into(),
        )),
        (None, None) => Err(ApiError::InvalidRequest(
            "missing field `group` (or `groups`)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_be_written_with_json_escapes_and_data_stays_verbatim() {
        let raw = br#"{"group":"room\u003a1","event":"a\u002eb","users":["\u0031"],"data":{"x":"\u00e9"}}"#;
        let n = Notification::parse(raw).unwrap();
        assert_eq!(n.targets, [GroupName::parse("room:1").unwrap()]);
        assert_eq!(n.event.as_str(), "a.b");
        assert!(n.users.unwrap().contains(&UserId::parse("1").unwrap()));
        assert_eq!(n.data.get(), r#"{"x":"\u00e9"}"#);
    }

    #[test]
    fn a_body_that_is_not_utf8_is_invalid_json() {
        let err = Notification::parse(b"{\"group\":\"\xff\",\"data\":1}").unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }
}
