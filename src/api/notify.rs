//! `POST /notify`: a Channels `group_send` for backends.

use std::collections::HashSet;

use std::future::{ready, Ready};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Either};
use warp::http::StatusCode;
use warp::reply::Response;

use super::{body, json_bytes, ApiError};
use crate::broker::{PublishNow, Published};
use crate::metrics::Via;
use crate::protocol::{
    Accepted, Data, EventName, GroupName, NotifyRequest, Publication, Text, UserId,
};
use crate::state::AppState;

/// Most groups one notify may target.
pub const MAX_TARGET_GROUPS: usize = 100;

/// Most users one notify may target.
pub const MAX_TARGET_USERS: usize = 1000;

/// A `POST /notify` body that passed every check, ready to publish. `data` is a slice
/// of the request body, shared by every publication made from it.
#[derive(Debug)]
pub struct Notification {
    targets: Targets,
    event: EventName,
    users: Option<HashSet<UserId>>,
    data: Data,
}

impl Notification {
    /// Parses and validates a `POST /notify` body; nothing is published yet.
    pub fn parse(raw: &Bytes) -> Result<Self, ApiError> {
        Self::validate(body::parse(raw)?, raw)
    }

    /// Validates a parsed `POST /notify` body (also one item of a batch), which was
    /// parsed from `body`.
    pub fn validate(req: NotifyRequest<'_>, body: &Bytes) -> Result<Self, ApiError> {
        Self::validate_after(req, body, None)
    }

    /// [`Notification::validate`] for an item of a batch that follows `previous`: a
    /// group or event name equal to the previous item's is shared with it (a reference
    /// count) rather than checked and allocated again, since a batch's items usually
    /// repeat them.
    pub fn validate_after(
        req: NotifyRequest<'_>,
        body: &Bytes,
        previous: Option<&Self>,
    ) -> Result<Self, ApiError> {
        let previous_group = previous.and_then(|p| match &p.targets {
            Targets::One(group) => Some(group),
            Targets::Many(_) => None,
        });
        let targets = targets(req.group, req.groups, previous_group)?;
        let event = match (req.event, previous) {
            (Some(e), Some(p)) if p.event.as_str() == e.0 => p.event.clone(),
            (Some(e), _) => EventName::parse(&e.0).map_err(ApiError::InvalidEvent)?,
            (None, _) => EventName::default_event(),
        };
        let users = req.users.map(users).transpose()?;
        Ok(Self {
            targets,
            event,
            users,
            data: Data::in_body(body, req.data),
        })
    }

    /// Publishes to each target group in order through [`AppState::publish`] (only to
    /// the listed users' connections when `users` was given) and returns what the reply
    /// says (see `broker` for what `recipients` counts).
    pub async fn publish(&self, state: &AppState) -> Result<Accepted<'_>, ApiError> {
        let id = crate::id::next();
        let list = match &self.targets {
            Targets::One(group) => {
                let published = state.publish(self.publication(group)).await?;
                return Ok(single(id, published));
            }
            Targets::Many(list) => list,
        };
        let mut groups = Vec::with_capacity(list.len());
        for group in list {
            let published = state.publish(self.publication(group)).await?;
            groups.push((group, published.offset, published.recipients));
        }
        Ok(Accepted::Groups { id, groups })
    }

    /// The publication of this notification to `group`, before the broker assigns its
    /// offset.
    fn publication(&self, group: &GroupName) -> Publication {
        Publication {
            group: group.clone(),
            event: self.event.clone(),
            offset: 0,
            epoch: Default::default(),
            users: self.users.clone(),
            data: self.data.clone(),
        }
    }
}

/// How `POST /notify` answers: at once, or later.
pub type Answer =
    Either<Ready<Result<Response, ApiError>>, BoxFuture<'static, Result<Response, ApiError>>>;

/// `POST /notify`: publishes the event to each target group and reports offsets and
/// local recipients.
///
/// Not an `async fn`: a notification to one group through a broker that publishes at
/// once (memory) is answered when this is called, so the caller carries a ready
/// response instead of this handler's state (which it would move and copy with every
/// future around it). Other cases go on in a boxed future.
pub fn notify(state: AppState, raw: Bytes) -> Answer {
    let notification = match Notification::parse(&raw) {
        Ok(notification) => notification,
        Err(e) => return Either::Left(ready(Err(e))),
    };
    let Targets::One(group) = &notification.targets else {
        return Either::Right(Box::pin(async move {
            let accepted = notification.publish(&state).await?;
            Ok(accepted_reply(&state, &accepted))
        }));
    };
    let id = crate::id::next();
    let reply =
        move |state: &AppState, published: Published| accepted_reply(state, &single(id, published));
    match state.publish_now(notification.publication(group)) {
        PublishNow::Done(published) => Either::Left(ready(
            published.map(|p| reply(&state, p)).map_err(ApiError::from),
        )),
        PublishNow::Wait(publication) => Either::Right(Box::pin(async move {
            let published = state.publish_waiting(publication).await?;
            Ok(reply(&state, published))
        })),
    }
}

/// What the reply says of notification `id`, published to one group.
fn single(id: [u8; crate::id::LEN], published: Published) -> Accepted<'static> {
    Accepted::Single {
        id,
        offset: published.offset,
        recipients: published.recipients,
    }
}

/// The 202 for an accepted notification, counted.
fn accepted_reply(state: &AppState, accepted: &Accepted<'_>) -> Response {
    state.metrics.notifications_accepted(Via::Notify, 1);
    json_bytes(StatusCode::ACCEPTED, accepted.to_json())
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

/// The groups a notification goes to.
#[derive(Debug, PartialEq, Eq)]
enum Targets {
    /// Given as `group`: the reply has the single-group form.
    One(GroupName),
    /// Given as `groups`, in request order.
    Many(Vec<GroupName>),
}

/// Validates `group` / `groups`: exactly one of them, valid names, no repeats. A
/// `group` equal to `previous` (already valid) is that name again.
fn targets(
    group: Option<Text<'_>>,
    groups: Option<Vec<Text<'_>>>,
    previous: Option<&GroupName>,
) -> Result<Targets, ApiError> {
    match (group, groups) {
        (Some(g), None) => Ok(Targets::One(match previous {
            Some(p) if p.as_str() == g.0 => p.clone(),
            _ => GroupName::parse(&g.0).map_err(ApiError::InvalidGroup)?,
        })),
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
            Ok(Targets::Many(names))
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
        let n = Notification::parse(&Bytes::from_static(raw)).unwrap();
        assert_eq!(n.targets, Targets::One(GroupName::parse("room:1").unwrap()));
        assert_eq!(n.event.as_str(), "a.b");
        assert!(n.users.unwrap().contains(&UserId::parse("1").unwrap()));
        assert_eq!(n.data.get(), r#"{"x":"\u00e9"}"#);
    }

    #[test]
    fn a_batch_item_shares_the_names_it_repeats_and_checks_the_others() {
        let body = Bytes::from_static(b"{}");
        fn item(json: &str) -> NotifyRequest<'_> {
            serde_json::from_str(json).unwrap()
        }
        let first =
            Notification::validate(item(r#"{"group":"a","event":"x","data":1}"#), &body).unwrap();
        let same = Notification::validate_after(
            item(r#"{"group":"a","event":"x","data":2}"#),
            &body,
            Some(&first),
        )
        .unwrap();
        assert_eq!((&same.targets, &same.event), (&first.targets, &first.event));
        let other = Notification::validate_after(
            item(r#"{"group":"b","event":"y","data":3}"#),
            &body,
            Some(&first),
        )
        .unwrap();
        assert_eq!(other.targets, Targets::One(GroupName::parse("b").unwrap()));
        assert_eq!(other.event.as_str(), "y");
        let bad = Notification::validate_after(
            item(r#"{"group":"a b","event":"x","data":4}"#),
            &body,
            Some(&first),
        );
        assert_eq!(bad.unwrap_err().code(), "invalid_group");
        let bad_event = Notification::validate_after(
            item(r#"{"group":"a","event":"x y","data":5}"#),
            &body,
            Some(&first),
        );
        assert_eq!(bad_event.unwrap_err().code(), "invalid_event");
    }

    #[test]
    fn a_body_that_is_not_utf8_is_invalid_json() {
        let body = Bytes::from_static(b"{\"group\":\"\xff\",\"data\":1}");
        let err = Notification::parse(&body).unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }
}
