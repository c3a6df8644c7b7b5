//! One task per WebSocket connection.
//!
//! The task owns the socket (not split: one set of buffers per connection) and
//! `select!`s over five things: a close request (slow consumer, shutdown), the outbound
//! queue, frames from the client, the heartbeat timer and, with auth on, the token's
//! expiry (a `refresh` frame moves it).
//!
//! Notifications arrive as complete encoded frames shared by every recipient, so they are
//! written straight to the socket with vectored writes: everything queued goes out in as
//! few syscalls as possible, with no per-connection write buffer to keep a burst's
//! high-water mark. tungstenite still reads client frames, answers pings and writes the
//! small replies and close frames; it is flushed before raw writes so frames never
//! interleave.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connection::{Connection, Ending, Socket};
use crate::auth::Grant;
use crate::broker::BrokerError;
use crate::hub::{Audience, Member};
use crate::metrics::Disconnect;
use crate::protocol::{
    ClientFrame, CloseCode, EventName, FrameError, GroupName, Offset, ServerFrame,
};
use crate::state::AppState;

/// Stands in for "never" on the expiry timer of a connection without a token.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A connection's state before and while its task runs.
pub struct Session {
    state: AppState,
    member: Member,
    /// Groups this connection is in; usually a handful, bounded by `--max-subscriptions`.
    groups: HashSet<GroupName>,
    /// Held for the connection's life: returning it admits the next connection.
    _permit: OwnedSemaphorePermit,
    remote: Option<SocketAddr>,
    /// What the token allows; `None` when auth is off (everything is allowed).
    grant: Option<Grant>,
}

impl Session {
    /// A session for `member`, registered in the hub under its user (for user close).
    pub fn new(
        state: AppState,
        member: Member,
        permit: OwnedSemaphorePermit,
        remote: Option<SocketAddr>,
        grant: Option<Grant>,
    ) -> Self {
        state.hub.register(&member);
        Self {
            state,
            member,
            groups: HashSet::new(),
            _permit: permit,
            remote,
            grant,
        }
    }

    /// Whether the token (if any) allows joining, or publishing to, `group`.
    fn check(&self, group: &GroupName, publish: bool) -> Result<(), FrameError> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        let checked = if publish {
            grant.check_publish(group)
        } else {
            grant.check_join(group)
        };
        checked.map_err(|e| FrameError::Forbidden(e.to_string()))
    }

    /// When the connection must close for its token's expiry (`None`: never).
    fn expiry(&self) -> Option<Instant> {
        let left = self.grant.as_ref()?.expires_in(SystemTime::now())?;
        Some(Instant::now() + left)
    }

    /// The current token's `exp`, which only a `refresh` changes.
    fn exp(&self) -> Option<u64> {
        self.grant.as_ref().map(Grant::exp)
    }

    /// Joins `group` (again: harmless); returns its offset at the moment of joining.
    pub async fn join(&mut self, group: GroupName) -> Result<Offset, BrokerError> {
        let offset = self
            .state
            .broker
            .subscribe(&group, self.member.clone())
            .await?;
        self.groups.insert(group);
        Ok(offset)
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

    /// Leaves every group; used when the upgrade never completed.
    pub async fn abandon(mut self) {
        self.leave_all().await;
    }

    async fn leave_all(&mut self) {
        self.member.end();
        self.state.hub.unregister(&self.member);
        for group in std::mem::take(&mut self.groups) {
            if let Err(e) = self
                .state
                .broker
                .unsubscribe(&group, self.member.id())
                .await
            {
                tracing::warn!(conn = self.member.id(), %group, error = %e, "leaving group failed");
            }
        }
    }

    /// Serves the connection until it ends, then leaves its groups and closes the socket.
    pub async fn run(mut self, ws: Socket) {
        tracing::debug!(conn = self.member.id(), remote = ?self.remote, "connection opened");
        let mut conn = Connection::new(ws);
        let ending = self.serve(&mut conn).await;
        let mut discarded = self.member.take().len();
        if matches!(ending, Ending::Drop) {
            discarded += conn.pending.len();
        }
        self.state.metrics.dropped_closed.inc_by(discarded as u64);
        // Leave first, so no more frames are queued for a connection that is going away.
        self.leave_all().await;
        let (code, how) = match &ending {
            Ending::Close(frame) => {
                let code = u16::from(frame.code);
                (Some(code), Disconnect::Code(code))
            }
            Ending::ClientClosed => (None, Disconnect::Client),
            Ending::Drop => (None, Disconnect::Dropped),
        };
        Box::pin(conn.finish(ending, self.state.config.write_timeout)).await;
        self.state.metrics.disconnected(how);
        tracing::debug!(conn = self.member.id(), ?code, "connection closed");
    }

    /// The idle state of this future is what every open connection costs, so the branches
    /// that do real work (reading a frame, writing a batch, closing) are boxed: their state
    /// is allocated only while they run. This took the spawned task from
    /// 3,976 to 2,496 bytes (measured with `size_of_val`).
    async fn serve(&mut self, conn: &mut Connection) -> Ending {
        let ping_interval = self.state.config.ping_interval;
        let ping_timeout = self.state.config.ping_timeout;
        let write_timeout = self.state.config.write_timeout;
        let heartbeat = sleep_until(Instant::now() + ping_interval);
        tokio::pin!(heartbeat);
        let mut expires_at = self.expiry();
        let mut armed_exp = self.exp();
        let expiry = sleep_until(expires_at.unwrap_or_else(|| Instant::now() + NEVER));
        tokio::pin!(expiry);
        let member = self.member.clone();
        // Created once: a fresh `cancelled()` future per wake-up would re-register with the
        // cancellation token (a mutex) for every batch written.
        let closing = member.closing();
        tokio::pin!(closing);
        loop {
            tokio::select! {
                biased;
                _ = &mut closing => return Box::pin(self.on_closing(conn)).await,
                () = &mut expiry, if expires_at.is_some() => {
                    return Ending::Close(CloseCode::TOKEN_EXPIRED.frame());
                }
                _ = member.ready() => {
                    let since;
                    (conn.pending, since) = member.take_batch();
                    let batch = conn.pending.len();
                    tokio::select! {
                        biased;
                        _ = &mut closing => return Box::pin(self.on_closing(conn)).await,
                        written = Box::pin(timeout(write_timeout, conn.write_pending())) => match written {
                            Ok(Ok(close)) => {
                                let frames = batch - conn.pending.len() - usize::from(close.is_some());
                                self.state.metrics.batch_written(frames, since);
                                if let Some(close) = close {
                                    return Ending::Close(close);
                                }
                            }
                            Ok(Err(_)) => return Ending::Drop,
                            Err(_) => {
                                tracing::debug!(conn = member.id(), "write stalled past --write-timeout");
                                return Ending::Drop;
                            }
                        },
                    }
                }
                incoming = conn.ws.next() => {
                    conn.last_seen = Instant::now();
                    if let Some(ending) = Box::pin(self.on_incoming(conn, incoming)).await {
                        return ending;
                    }
                    // A `refresh` moves the expiry; re-arm only then.
                    if self.exp() != armed_exp {
                        armed_exp = self.exp();
                        expires_at = self.expiry();
                        expiry.as_mut().reset(expires_at.unwrap_or_else(|| Instant::now() + NEVER));
                    }
                }
                () = &mut heartbeat => {
                    let now = Instant::now();
                    match conn.ping_sent {
                        Some(sent) if conn.last_seen < sent => {
                            if now >= sent + ping_timeout {
                                return Ending::Close(CloseCode::HEARTBEAT_TIMEOUT.frame());
                            }
                            heartbeat.as_mut().reset(sent + ping_timeout);
                        }
                        _ if now >= conn.last_seen + ping_interval => {
                            if Box::pin(conn.send(Message::Ping(Default::default()), write_timeout)).await.is_err() {
                                return Ending::Drop;
                            }
                            conn.ping_sent = Some(now);
                            heartbeat.as_mut().reset(now + ping_timeout);
                        }
                        _ => heartbeat.as_mut().reset(conn.last_seen + ping_interval),
                    }
                }
            }
        }
    }

    /// A close was requested or shutdown began. A requested close (slow consumer, a group
    /// close that found the queue full) drops the queue; on shutdown what is already queued
    /// is still written, within `--write-timeout`, before 1012.
    async fn on_closing(&mut self, conn: &mut Connection) -> Ending {
        if let Some(frame) = self.member.requested_close() {
            let before = conn.pending.len();
            conn.drop_unstarted();
            let discarded = before - conn.pending.len() + self.member.take().len();
            self.state.metrics.dropped_closed.inc_by(discarded as u64);
            return Ending::Close(frame);
        }
        conn.pending.extend(self.member.take());
        let batch = conn.pending.len();
        let written = timeout(self.state.config.write_timeout, conn.write_pending()).await;
        if let Ok(Ok(close)) = &written {
            let frames = batch - conn.pending.len() - usize::from(close.is_some());
            self.state.metrics.batch_written(frames, None);
        }
        match written {
            Ok(Ok(Some(group_close))) => Ending::Close(group_close),
            Ok(Ok(None)) => Ending::Close(CloseCode::SERVICE_RESTART.frame()),
            _ => Ending::Drop,
        }
    }

    async fn on_incoming(
        &mut self,
        conn: &mut Connection,
        incoming: Option<Result<Message, WsError>>,
    ) -> Option<Ending> {
        let msg = match incoming {
            None => return Some(Ending::Drop),
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Some(read_error(e)),
        };
        match msg {
            Message::Text(text) => {
                let replies = self
                    .on_frame(&text)
                    .await
                    .unwrap_or_else(|e| vec![e.to_frame()]);
                for reply in replies {
                    let msg = Message::text(reply.to_json());
                    if conn
                        .send(msg, self.state.config.write_timeout)
                        .await
                        .is_err()
                    {
                        return Some(Ending::Drop);
                    }
                }
                None
            }
            Message::Binary(_) => Some(Ending::Close(CloseCode::UNSUPPORTED_DATA.frame())),
            Message::Close(_) => Some(Ending::ClientClosed),
            // tungstenite answers pings itself; a pong only needs `last_seen`, set above.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }

    /// Handles one client frame and returns the replies due, in order (usually one).
    async fn on_frame(&mut self, text: &str) -> Result<Vec<ServerFrame>, FrameError> {
        let frame = ClientFrame::parse(text);
        self.state.metrics.client_frame(frame.as_ref().ok());
        let reply = match frame? {
            ClientFrame::Ping => ServerFrame::Pong,
            ClientFrame::Subscribe { group } => {
                let name = parse_group(&group)?;
                self.check(&name, false)?;
                let offset = if self.groups.contains(&name) {
                    self.state
                        .broker
                        .offset(&name)
                        .await
                        .map_err(|_| FrameError::Unavailable)?
                } else {
                    let max = self.state.config.max_subscriptions as usize;
                    if self.groups.len() >= max {
                        return Err(FrameError::TooManySubscriptions(max));
                    }
                    self.join(name).await.map_err(|_| FrameError::Unavailable)?
                };
                ServerFrame::Subscribed { group, offset }
            }
            ClientFrame::Unsubscribe { group } => {
                let name = parse_group(&group)?;
                if self.groups.remove(&name) {
                    self.state
                        .broker
                        .unsubscribe(&name, self.member.id())
                        .await
                        .map_err(|_| FrameError::Unavailable)?;
                }
                ServerFrame::Unsubscribed { group }
            }
            ClientFrame::Refresh { token } => return self.refresh(&token).await,
            ClientFrame::Publish { group, event, data } => {
                if !self.state.config.client_publish {
                    return Err(FrameError::PublishDisabled);
                }
                let name = parse_group(&group)?;
                self.check(&name, true)?;
                if !self.groups.contains(&name) {
                    return Err(FrameError::NotSubscribed(group));
                }
                let event = match event {
                    Some(e) => {
                        EventName::parse(&e).map_err(|e| FrameError::InvalidEvent(e.to_string()))?
                    }
                    None => EventName::default_event(),
                };
                self.state
                    .publish(&name, &event, &data, Audience::Everyone)
                    .await
                    .map_err(|_| FrameError::Unavailable)?;
                // The publisher is a member, so the notification itself is its acknowledgement.
                return Ok(Vec::new());
            }
        };
        Ok(vec![reply])
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
            self.state
                .broker
                .unsubscribe(&group, self.member.id())
                .await
                .map_err(|_| FrameError::Unavailable)?;
            replies.push(ServerFrame::Unsubscribed {
                group: group.to_string(),
            });
        }
        replies.push(ServerFrame::Refreshed { exp });
        Ok(replies)
    }
}

fn parse_group(raw: &str) -> Result<GroupName, FrameError> {
    GroupName::parse(raw).map_err(|e| FrameError::InvalidGroup(e.to_string()))
}

/// Maps a read error to how the connection ends.
fn read_error(e: WsError) -> Ending {
    match e {
        WsError::Capacity(_) => Ending::Close(CloseCode::MESSAGE_TOO_BIG.frame()),
        WsError::Utf8(_) => Ending::Close(CloseCode::INVALID_PAYLOAD.frame()),
        // The client went away without a close frame: that is 1006 (abnormal closure),
        // not a protocol error, and there is nobody left to send a close frame to.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Drop,
        WsError::Protocol(_) => Ending::Close(CloseCode::PROTOCOL_ERROR.frame()),
        _ => Ending::Drop,
    }
}
