//! One task per WebSocket connection: the socket loop. What the client's frames do is
//! [`super::commands`]; this module only moves bytes and keeps time.
//!
//! The task owns the socket (not split: one set of buffers per connection) and
//! `select!`s over five things: a close request (slow consumer, shutdown), the outbound
//! queue, frames from the client, the heartbeat timer and, with auth on, the token's
//! expiry (a `refresh` frame moves it).
//!
//! Notifications arrive as complete encoded frames shared by every recipient, and the
//! hub's drains write them to the socket (`hub::drain`). The session only finishes what
//! the socket did not take at once, with vectored writes when it is writable again, so a
//! delivery costs no task wake-up.
//! tungstenite still reads client frames, answers pings and writes the small replies and
//! close frames, through the same ordered output (`connection::MemberIo`), so frames
//! never interleave.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::commands::Membership;
use super::connection::{write_pending, Connection, Ending, MemberIo, Socket, Written};
use crate::auth::Grant;
use crate::broker::BrokerError;
use crate::hub::Member;
use crate::metrics::Disconnect;
use crate::protocol::{CloseCode, GroupName, Position, Resume};
use crate::state::AppState;

/// Stands in for "never" on the expiry timer of a connection without a token.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// A connection's state before and while its task runs.
pub struct Session {
    state: AppState,
    membership: Membership,
    /// Held for the connection's life: returning it admits the next connection.
    _permit: OwnedSemaphorePermit,
    remote: Option<SocketAddr>,
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
        Self {
            membership: Membership::new(state.clone(), member, grant),
            state,
            _permit: permit,
            remote,
        }
    }

    /// The span the connection's task runs in: its id, user and peer address.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "conn",
            conn = self.id(),
            user = self
                .membership
                .grant()
                .map(|g| tracing::field::display(g.user())),
            remote = self.remote.map(tracing::field::display),
        )
    }

    fn id(&self) -> crate::hub::ConnId {
        self.membership.member().id()
    }

    /// Joins `group` (again: harmless); returns its position at the moment of joining.
    pub async fn join(&mut self, group: GroupName) -> Result<Position, BrokerError> {
        self.membership.join(group).await
    }

    /// Joins `group` resuming from `from` (see [`Membership::resume`]).
    pub async fn resume(&mut self, group: GroupName, from: &Resume) -> Result<(), BrokerError> {
        self.membership.resume(group, from).await
    }

    /// Joins the user's personal group, if there is one.
    pub async fn join_personal(&mut self) -> Result<(), BrokerError> {
        self.membership.join_personal().await
    }

    /// Leaves every group; used when the upgrade never completed.
    pub async fn abandon(mut self) {
        self.membership.leave_all().await;
    }

    /// Hands the upgraded socket to the member (from now on notifications are written
    /// through to it) and returns what tungstenite reads and writes through.
    pub fn attach(&self, socket: tokio::net::TcpStream) -> MemberIo {
        let member = self.membership.member();
        member.attach(socket);
        MemberIo(member.clone())
    }

    /// Serves the connection until it ends, then leaves its groups and closes the socket.
    pub async fn run(mut self, ws: Socket) {
        tracing::debug!(conn = self.id(), remote = ?self.remote, "connection opened");
        let mut conn = Connection::new(ws);
        let ending = self.serve(&mut conn).await;
        // Leave first, so no more frames are queued for a connection that is going away;
        // this also drops the queued frames not yet started (a partly written one stays:
        // the close frame goes after it). A dropped socket takes everything with it.
        let mut discarded = self.membership.leave_all().await;
        if matches!(ending, Ending::Drop) {
            discarded += self.membership.member().take().len();
        }
        self.state.metrics.dropped_closed.inc_by(discarded as u64);
        let (code, how) = match &ending {
            Ending::Close(frame) => {
                let code = frame.code;
                (Some(code), Disconnect::Code(code))
            }
            Ending::ClientClosed => (None, Disconnect::Client),
            Ending::Drop => (None, Disconnect::Dropped),
        };
        Box::pin(conn.finish(ending, self.state.config.write_timeout)).await;
        self.state.metrics.disconnected(how);
        tracing::debug!(conn = self.id(), ?code, "connection closed");
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
        let mut expires_at = self.membership.expiry();
        let mut armed_exp = self.membership.exp();
        let expiry = sleep_until(expires_at.unwrap_or_else(|| Instant::now() + NEVER));
        tokio::pin!(expiry);
        let member = self.membership.member().clone();
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
                    let written = self.write_batch(conn, closing.as_mut(), write_timeout);
                    if let Some(ending) = Box::pin(written).await {
                        return ending;
                    }
                }
                incoming = conn.ws.next() => {
                    conn.last_seen = Instant::now();
                    if let Some(ending) = Box::pin(self.on_incoming(conn, incoming)).await {
                        return ending;
                    }
                    // A `refresh` moves the expiry; re-arm only then.
                    if self.membership.exp() != armed_exp {
                        armed_exp = self.membership.exp();
                        expires_at = self.membership.expiry();
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

    /// Writes everything queued for the member (what the socket did not take at once),
    /// waiting for it to be writable, within `write_timeout`. A
    /// close request or shutdown (`closing`) interrupts a write stuck on a slow client.
    /// `None` while the connection goes on.
    async fn write_batch(
        &mut self,
        conn: &mut Connection,
        closing: Pin<&mut impl Future<Output = ()>>,
        write_timeout: Duration,
    ) -> Option<Ending> {
        let member = self.membership.member().clone();
        tokio::select! {
            biased;
            _ = closing => Some(Box::pin(self.on_closing(conn)).await),
            written = timeout(write_timeout, write_pending(&member)) => match written {
                Ok(Ok(Written { frames, close, since })) => {
                    self.state.metrics.batch_written(frames, since);
                    close.map(Ending::Close)
                }
                Ok(Err(_)) => Some(Ending::Drop),
                Err(_) => {
                    tracing::debug!(conn = self.id(), "write stalled past --write-timeout");
                    Some(Ending::Drop)
                }
            },
        }
    }

    /// A close was requested or shutdown began. A requested close (slow consumer, a group
    /// close that found the queue full) drops the queue; on shutdown what is already queued
    /// is still written, within `--write-timeout`, before 1012.
    async fn on_closing(&mut self, _conn: &mut Connection) -> Ending {
        let member = self.membership.member();
        if let Some(frame) = member.requested_close() {
            let discarded = member.drop_unstarted();
            self.state.metrics.dropped_closed.inc_by(discarded as u64);
            return Ending::Close(frame);
        }
        match timeout(self.state.config.write_timeout, write_pending(member)).await {
            Ok(Ok(Written { frames, close, .. })) => {
                self.state.metrics.batch_written(frames, None);
                Ending::Close(close.unwrap_or_else(|| CloseCode::SERVICE_RESTART.frame()))
            }
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
                // Held while the frame is handled: a subscribe's live notifications must
                // not be written ahead of its `subscribed` reply (and a resume's
                // replay, which is queued in front of them).
                let member = self.membership.member().clone();
                member.hold();
                let mut ending = None;
                for reply in self.membership.on_frame(&text).await {
                    let msg = Message::text(reply.to_json());
                    if conn
                        .send(msg, self.state.config.write_timeout)
                        .await
                        .is_err()
                    {
                        ending = Some(Ending::Drop);
                        break;
                    }
                }
                member.unhold();
                ending
            }
            Message::Binary(_) => Some(Ending::Close(CloseCode::UNSUPPORTED_DATA.frame())),
            Message::Close(_) => Some(Ending::ClientClosed),
            // tungstenite answers pings itself; a pong only needs `last_seen`, set above.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }
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
