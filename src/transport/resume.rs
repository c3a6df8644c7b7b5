//! Resuming a group after a reconnect: `GET /ws/{group}?since=&epoch=` and
//! `{"type":"subscribe",...,"since":N,"epoch":"e"}` end here.
//!
//! The member joins first, so live notifications queue behind whatever it has not been
//! sent yet; the `subscribed` frame and the replayed notifications are then put in front
//! of them. The session writes nothing while this runs (before the 101, or while it
//! handles the subscribe frame), so the client sees `subscribed`, the missed
//! notifications, then live ones, with no gap and no duplicate.

use serde::Deserialize;
use warp::{Filter, Rejection};

use crate::api::ApiError;
use crate::broker::BrokerError;
use crate::hub::{Delivery, Member};
use crate::protocol::{Epoch, FrameError, GroupName, Offset, Resume, ServerFrame, MAX_SINCE};
use crate::state::AppState;

/// The resume part of a `/ws/{group}` query; other parameters (`token`) are not ours.
#[derive(Debug, Deserialize)]
struct ResumeQuery {
    since: Option<Offset>,
    epoch: Option<String>,
}

/// `?since=<offset>&epoch=<e>` of `/ws/{group}`: `None` without `since`; a malformed
/// one is 400 `invalid_query`. The raw query is never logged (it may carry a token).
pub fn query() -> impl Filter<Extract = (Option<Resume>,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            let invalid = |m: &str| warp::reject::custom(ApiError::InvalidQuery(m.to_owned()));
            let q: ResumeQuery = serde_urlencoded::from_str(&raw)
                .map_err(|_| invalid("`since` must be a whole number of at least 0"))?;
            resume(q.since, q.epoch).map_err(|e| invalid(&e))
        })
}

/// The resume of a subscribe frame's `since` and `epoch`.
pub fn from_frame(
    since: Option<Offset>,
    epoch: Option<String>,
) -> Result<Option<Resume>, FrameError> {
    resume(since, epoch)
        .map_err(|e| FrameError::InvalidFrame(format!("invalid subscribe frame: {e}")))
}

fn resume(since: Option<Offset>, epoch: Option<String>) -> Result<Option<Resume>, String> {
    let Some(since) = since else {
        return match epoch {
            Some(_) => Err("`epoch` is only sent with `since`".into()),
            None => Ok(None),
        };
    };
    if since > MAX_SINCE {
        return Err(format!("`since` must be 0 to {MAX_SINCE}"));
    }
    let epoch = epoch
        .map(|e| Epoch::parse(&e))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Some(Resume { since, epoch }))
}

/// Joins `member` to `group` and queues, in front of anything live, `subscribed` (with
/// `recovered`) and the notifications it missed that its user may see. A replay larger
/// than the member's queue closes it as a slow consumer (4100), as live overflow would.
pub async fn join(
    state: &AppState,
    member: &Member,
    group: &GroupName,
    resume: &Resume,
) -> Result<(), BrokerError> {
    let (position, recovery) = state
        .node
        .resume(group, member.clone(), resume.since, resume.epoch.as_ref())
        .await?;
    let subscribed = ServerFrame::Subscribed {
        group: group.to_string(),
        offset: position.offset,
        epoch: position.epoch,
        recovered: Some(recovery.recovered()),
    };
    let mut frames = vec![subscribed.to_wire()];
    frames.extend(recovery.frames_for(member.user()));
    if member.prepend(frames) == Delivery::Slow {
        tracing::debug!(conn = member.id(), %group, "resume does not fit the send queue: closing as slow consumer");
    }
    Ok(())
}

/// Queues `subscribed` with `recovered:false` for a group `member` is already in, after
/// what is queued: those frames are at or before the position it reports.
pub async fn already_member(
    state: &AppState,
    member: &Member,
    group: &GroupName,
) -> Result<(), BrokerError> {
    let position = state.broker.position(group).await?;
    let subscribed = ServerFrame::Subscribed {
        group: group.to_string(),
        offset: position.offset,
        epoch: position.epoch,
        recovered: Some(false),
    };
    // After the fan-outs already handed to the drains: those frames are at or before
    // the position too, and must not come after it.
    let frame = subscribed.to_wire();
    let member = member.clone();
    state.node.local.hub().after_deliveries(move || {
        member.try_deliver(&frame);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_past_the_json_safe_range_is_refused() {
        assert!(resume(Some(MAX_SINCE), None).is_ok());
        assert!(resume(Some(MAX_SINCE + 1), None).is_err());
    }

    #[test]
    fn since_and_epoch_are_checked_together() {
        assert_eq!(resume(None, None), Ok(None));
        assert!(resume(None, Some("e".into())).is_err());
        assert!(resume(Some(3), Some("not valid!".into())).is_err());
        let r = resume(Some(3), Some("e".into())).unwrap().unwrap();
        assert_eq!((r.since, r.epoch.unwrap().as_str()), (3, "e"));
        assert_eq!(resume(Some(0), None).unwrap().unwrap().epoch, None);
    }
}
