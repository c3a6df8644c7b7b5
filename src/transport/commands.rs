//! What a client's frames do: `subscribe`, `unsubscribe`, `ping`, `publish` and
//! `refresh`, and the state they change, a connection's [`Membership`] (its groups and
//! its token's rights).
//!
//! No socket here: the session hands in each text frame and writes the replies, so these
//! rules are unit-tested below with a real hub and broker and no network.

use std::time::SystemTime;

use tokio::time::Instant;

use self::groups::Groups;
use super::resume;
use crate::auth::{Denied, Grant};
use crate::broker::BrokerError;
use crate::hub::Member;
use crate::protocol::{
    ClientFrame, EventName, FrameError, GroupName, Position, Publication, Resume, ServerFrame,
};
use crate::state::AppState;

/// One connection's place in the hub: its member handle, the groups it is in and what
/// its token allows.
pub struct Membership {
    state: AppState,
    member: Member,
    /// Groups this connection is in; usually a handful, bounded by `--max-subscriptions`.
    groups: Groups,
    /// What the token allows; `None` when auth is off (everything is allowed). Boxed:
    /// it is as large as the rest of the session together, and every idle connection's
    /// task would carry its space even with auth off.
    grant: Option<Box<Grant>>,
}

impl Membership {
    /// The membership of `member`, registered in the hub under its user (for user close).
    pub fn new(state: AppState, member: Member, grant: Option<Grant>) -> Self {
        state.hub.register(&member);
        Self {
            state,
            member,
            groups: Groups::default(),
            grant: grant.map(Box::new),
        }
    }

    /// The connection's member handle (its queue and close requests).
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// The app state this membership joins and leaves through.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What the token allows; `None` when auth is off.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_deref()
    }

    /// When the connection must close for its token's expiry (`None`: never).
    pub fn expiry(&self) -> Option<Instant> {
        let left = self.grant.as_deref()?.expires_in(SystemTime::now())?;
        Some(Instant::now() + left)
    }

    /// The current token's `exp`, which only a `refresh` changes.
    pub fn exp(&self) -> Option<u64> {
        self.grant.as_deref().map(Grant::exp)
    }

    /// Joins `group` (again: harmless); returns its position at the moment of joining.
    pub async fn join(&mut self, group: GroupName) -> Result<Position, BrokerError> {
        let position = self.state.node.join(&group, self.member.clone()).await?;
        self.groups.insert(group);
        Ok(position)
    }

    /// Joins `group` resuming from `from`: `subscribed` and what was missed are queued
    /// ahead of live notifications (see `transport::resume`). For a group the connection
    /// is already in (the path's group is the personal group), live delivery never
    /// stopped: `subscribed` says `recovered:false` and nothing is replayed.
    pub async fn resume(&mut self, group: GroupName, from: &Resume) -> Result<(), BrokerError> {
        if self.groups.contains(&group) {
            return resume::already_member(&self.state, &self.member, &group).await;
        }
        resume::join(&self.state, &self.member, &group, from).await?;
        self.groups.insert(group);
        Ok(())
    }

    /// Joins the user's personal group, if there is one.
    pub async fn join_personal(&mut self) -> Result<(), BrokerError> {
        let personal = self
            .grant
            .as_ref()
            .and_then(|g| g.personal_group())
            .cloned();
        if let Some(group) = personal {
            self.join(group).await?;
        }
        Ok(())
    }

    /// Ends the member and leaves every group, so nothing more is queued for it. Returns
    /// how many queued frames were dropped (see [`Member::end`]).
    pub async fn leave_all(&mut self) -> usize {
        let dropped = self.member.end();
        self.state.hub.unregister(&self.member);
        for group in self.groups.take() {
            if let Err(e) = self.leave(&group).await {
                tracing::warn!(conn = self.member.id(), %group, error = %e, "leaving group failed");
            }
        }
        dropped
    }

    /// Handles one text frame from the client and returns the replies due, in order
    /// (usually one; an error frame when the frame was refused).
    pub async fn on_frame(&mut self, text: &str) -> Vec<ServerFrame> {
        let frame = ClientFrame::parse(text);
        self.state.metrics.client_frame(frame.as_ref().ok());
        let replies = match frame {
            Ok(frame) => self.command(frame).await,
            Err(e) => Err(e),
        };
        replies.unwrap_or_else(|e| vec![e.to_frame()])
    }

    async fn command(&mut self, frame: ClientFrame) -> Result<Vec<ServerFrame>, FrameError> {
        let reply = match frame {
            ClientFrame::Ping => ServerFrame::Pong,
            ClientFrame::Subscribe {
                group,
                since,
                epoch,
            } => {
                let from = resume::from_frame(since, epoch)?;
                match self.subscribe(group, from).await? {
                    Some(reply) => reply,
                    // A resume queues `subscribed` ahead of the replay itself.
                    None => return Ok(Vec::new()),
                }
            }
            ClientFrame::Unsubscribe { group } => self.unsubscribe(group).await?,
            ClientFrame::Refresh { token } => return self.refresh(&token).await,
            ClientFrame::Publish { group, event, data } => {
                self.publish(group, event, data).await?;
                // The publisher is a member, so the notification itself is its acknowledgement.
                return Ok(Vec::new());
            }
        };
        Ok(vec![reply])
    }

    /// Joins `group`, resuming from `from` when given; the `subscribed` reply, or `None`
    /// when a resume queued it.
    async fn subscribe(
        &mut self,
        group: String,
        from: Option<Resume>,
    ) -> Result<Option<ServerFrame>, FrameError> {
        let name = parse_group(&group)?;
        self.allowed(|grant| grant.check_join(&name))?;
        // Already a member: live delivery never stopped, so nothing is replayed.
        let (position, recovered) = if self.groups.contains(&name) {
            let position = self.state.broker.position(&name).await;
            let position = position.map_err(|_| FrameError::Unavailable)?;
            (position, from.map(|_| false))
        } else {
            let max = self.state.config.max_subscriptions as usize;
            if self.groups.len() >= max {
                return Err(FrameError::TooManySubscriptions(max));
            }
            if let Some(from) = from {
                let resumed = self.resume(name, &from).await;
                resumed.map_err(|_| FrameError::Unavailable)?;
                return Ok(None);
            }
            let position = self.join(name).await;
            (position.map_err(|_| FrameError::Unavailable)?, None)
        };
        Ok(Some(ServerFrame::Subscribed {
            group,
            offset: position.offset,
            epoch: position.epoch,
            recovered,
        }))
    }

    async fn unsubscribe(&mut self, group: String) -> Result<ServerFrame, FrameError> {
        let name = parse_group(&group)?;
        if self.groups.remove(&name) {
            self.leave(&name)
                .await
                .map_err(|_| FrameError::Unavailable)?;
        }
        Ok(ServerFrame::Unsubscribed { group })
    }

    async fn publish(
        &mut self,
        group: String,
        event: Option<String>,
        data: Box<serde_json::value::RawValue>,
    ) -> Result<(), FrameError> {
        if !self.state.config.client_publish {
            return Err(FrameError::PublishDisabled);
        }
        let name = parse_group(&group)?;
        self.allowed(|grant| grant.check_publish(&name))?;
        if !self.groups.contains(&name) {
            return Err(FrameError::NotSubscribed(group));
        }
        let event = match event {
            Some(e) => EventName::parse(&e).map_err(|e| FrameError::InvalidEvent(e.to_string()))?,
            None => EventName::default_event(),
        };
        let publication = Publication {
            group: name,
            event,
            offset: 0,
            epoch: Default::default(),
            users: None,
            data: data.into(),
        };
        self.state
            .publish(publication)
            .await
            .map_err(|_| FrameError::Unavailable)?;
        Ok(())
    }

    /// Replaces the connection's token with `token` (same `sub`): its rights become the
    /// new token's, so it first leaves the groups the new token does not allow (one
    /// `unsubscribed` each), then answers `refreshed` with the new `exp`.
    async fn refresh(&mut self, token: &str) -> Result<Vec<ServerFrame>, FrameError> {
        let (Some(verifier), Some(grant)) = (&self.state.verifier, &mut self.grant) else {
            return Err(FrameError::AuthDisabled);
        };
        let claims = verifier
            .verify(token)
            .map_err(|e| FrameError::InvalidToken(e.to_string()))?;
        grant
            .refresh(claims)
            .map_err(|e| FrameError::Forbidden(e.to_string()))?;
        let exp = grant.exp();
        let revoked: Vec<GroupName> = self
            .groups
            .iter()
            .filter(|g| !grant.may_join(g))
            .cloned()
            .collect();
        let mut replies = Vec::with_capacity(revoked.len() + 1);
        for group in revoked {
            self.groups.remove(&group);
            self.leave(&group)
                .await
                .map_err(|_| FrameError::Unavailable)?;
            replies.push(ServerFrame::Unsubscribed {
                group: group.to_string(),
            });
        }
        replies.push(ServerFrame::Refreshed { exp });
        Ok(replies)
    }

    /// Whether the token, if any, passes `check` (everything passes with auth off).
    fn allowed(&self, check: impl FnOnce(&Grant) -> Result<(), Denied>) -> Result<(), FrameError> {
        match &self.grant {
            Some(grant) => check(grant).map_err(|e| FrameError::Forbidden(e.to_string())),
            None => Ok(()),
        }
    }

    async fn leave(&self, group: &GroupName) -> Result<(), BrokerError> {
        self.state.node.leave(group, self.member.id()).await
    }
}

fn parse_group(raw: &str) -> Result<GroupName, FrameError> {
    GroupName::parse(raw).map_err(|e| FrameError::InvalidGroup(e.to_string()))
}

mod groups;

#[cfg(test)]
mod tests;
