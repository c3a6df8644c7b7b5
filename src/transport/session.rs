//! One task per WebSocket connection: the socket loop. What the client's frames do is
//! [`super::commands`]; this module only moves bytes and keeps time.
//!
//! The socket itself belongs to the connection's member (`hub::member`: every write goes
//! through its one ordered output); the task `select!`s over five things: shutdown, the
//! outbound queue (which also wakes it for a close request: slow consumer, group or user
//! close), frames from the client, the heartbeat timer and, with auth on, the token's
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

use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep_until, timeout, Instant, Sleep};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{Instrument, Span};

use super::commands::Membership;
use super::connection::{write_pending, Connection, Ending, MemberIo, Written};
pub use super::log_context::LogContext;
use super::read_ahead::ReadAhead;
use crate::auth::Grant;
use crate::broker::BrokerError;
use crate::hub::Member;
use crate::metrics::Disconnect;
use crate::protocol::{CloseCode, GroupName, Position, Resume};
use crate::state::AppState;

/// A connection's state before and while its task runs.
pub struct Session {
    /// Also holds the app state (see [`Session::state`]): one copy, not two, in every task.
    membership: Membership,
    /// Held for the connection's life: returning it admits the next connection.
    _permit: OwnedSemaphorePermit,
    // No peer address: the member's socket knows it (see `Session::span`), and a copy
    // here was 32 bytes in every idle task.
    log: LogContext,
}

impl Session {
    /// A session for `member`, registered in the hub under its user (for user close).
    pub fn new(
        state: AppState,
        member: Member,
        permit: OwnedSemaphorePermit,
        grant: Option<Grant>,
        log: LogContext,
    ) -> Self {
        Self {
            membership: Membership::new(state, member, grant),
            _permit: permit,
            log,
        }
    }

    /// The connection's span (its id, user and peer address) under a `request` span like
    /// its upgrade request's (method, id and route), made for work that may log. The peer
    /// address is the member's (read once, when its socket was attached).
    pub fn span(&self) -> Span {
        let mut id = [0; crate::id::LEN];
        let request = tracing::info_span!(
            parent: None,
            "request",
            method = "GET",
            request_id = self.log.request_id(&mut id),
            route = self.log.route(),
        );
        self.span_under(&request, || self.membership.member().peer_addr())
    }

    /// The connection's span under `request`, its upgrade request's span while that is
    /// still open; `remote` gives the peer address if the span is enabled.
    pub fn span_under(&self, request: &Span, remote: impl FnOnce() -> Option<SocketAddr>) -> Span {
        tracing::info_span!(
            parent: request,
            "conn",
            conn = self.id(),
            user = self
                .membership
                .grant()
                .map(|g| tracing::field::display(g.user())),
            remote = remote().map(tracing::field::display),
        )
    }

    /// The app state (the membership's).
    fn state(&self) -> &AppState {
        self.membership.state()
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

    /// Hands the upgraded socket to the member (from now on the hub's drains write
    /// notifications to it) and returns the adapter tungstenite reads and writes through.
    pub fn attach(&self, socket: tokio::net::TcpStream) -> ReadAhead<MemberIo> {
        let member = self.membership.member();
        member.attach(socket);
        ReadAhead::new(MemberIo(member.clone()))
    }

    /// Serves the connection until it ends, then leaves its groups and closes the socket.
    ///
    /// An `async move` block rather than an `async fn`: an `async fn` moves its arguments
    /// into locals of its own, and its state kept both the arguments and the locals, so
    /// every idle task carried the session and the socket twice (448 bytes; see `serve`).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    pub(super) fn run(mut self, mut conn: Connection) -> impl Future<Output = ()> {
        async move {
            self.span().in_scope(|| {
                let remote = self.membership.member().peer_addr();
                tracing::debug!(conn = self.id(), ?remote, "connection opened");
            });
            let ending = self.serve(&mut conn).await;
            let span = self.span();
            // Boxed in a statement of its own: a temporary future in the `.await`'s
            // statement would stay in this future's state (see `serve`).
            let end = Box::pin(self.end(conn, ending).instrument(span));
            end.await;
        }
    }

    /// Leaves the groups, counts what was never written and closes the socket.
    async fn end(mut self, conn: Connection, ending: Ending) {
        // Leave first, so no more frames are queued for a connection that is going away;
        // this also drops the queued frames not yet started (a partly written one stays:
        // the close frame goes after it). A dropped socket takes everything with it.
        let mut discarded = self.membership.leave_all().await;
        if matches!(ending, Ending::Drop) {
            discarded += self.membership.member().take().len();
        }
        self.state().metrics.dropped_closed.inc_by(discarded as u64);
        let (code, how) = match &ending {
            Ending::Close(frame) => {
                let code = frame.code;
                (Some(code), Disconnect::Code(code))
            }
            Ending::ClientClosed => (None, Disconnect::Client),
            Ending::Drop => (None, Disconnect::Dropped),
        };
        let finish = Box::pin(conn.finish(ending, self.state().config.write_timeout));
        finish.await;
        self.state().metrics.disconnected(how);
        tracing::debug!(conn = self.id(), ?code, "connection closed");
    }

    /// The idle state of this future is what every open connection costs, so the branches
    /// that do real work (reading a frame, writing a batch, closing) are boxed: their state
    /// is allocated only while they run. This took the spawned task from
    /// 3,976 to 2,496 bytes (measured with `size_of_val`); the session's own task (see
    /// `upgrade::start_session`), no span held while idle, an expiry timer only for a
    /// token with an `exp`, a boxed `Grant` and boxing each branch's future in a statement
    /// of its own (a temporary in the `.await`'s own statement is kept in the state) took
    /// it to 1,632; the timeouts read from the config where used (not copied into locals),
    /// the groups in a vector and the route as a flag to 1,520; the member owning the
    /// socket to 1,376; `run` and `serve` as `async move` blocks rather than `async fn`s
    /// (whose state holds each argument twice, as argument and as local) to 904
    /// (`-Zprint-type-sizes`), which put tokio's task allocation at 1,024 bytes; the
    /// member's one-waiter wake-up instead of a `Notify` (its `Notified` was 64 bytes of
    /// the `select!`), no peer address kept, a `poll_fn` for the expiry timer and the
    /// groups in a boxed slice to 784, a task of 896.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn stores its arguments twice"
    )]
    fn serve<'a>(&'a mut self, conn: &'a mut Connection) -> impl Future<Output = Ending> + 'a {
        async move {
            // The timeouts are read from the config where they are used, not copied into
            // locals: a local lives in every idle task.
            let heartbeat = sleep_until(Instant::now() + self.state().config.ping_interval);
            tokio::pin!(heartbeat);
            // Only a token with an `exp` needs an expiry timer; it lives on the heap, so a
            // connection without one does not carry its space.
            let mut expiry = self.membership.expiry().map(|at| Box::pin(sleep_until(at)));
            // The `exp` the timer is armed for, 0 for none (a `u64`, not an `Option`: 8
            // bytes less in every idle task).
            let mut armed_exp = self.membership.exp().unwrap_or(0);
            let member = self.membership.member().clone();
            // Created once: a fresh `cancelled()` future per wake-up would re-register with the
            // cancellation token (a mutex) for every batch written.
            let shutdown = member.shutdown();
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => {
                        let closed = self.closing();
                        return closed.await;
                    }
                    // A requested close wakes `ready`; one that came with the expiry wins.
                    () = expired(&mut expiry), if !member.close_requested() => {
                        return Ending::Close(CloseCode::TOKEN_EXPIRED.frame());
                    }
                    _ = member.ready() => {
                        if member.close_requested() {
                            let closed = self.closing();
                            return closed.await;
                        }
                        let written = self.write_batch(shutdown.as_mut());
                        let written = Box::pin(written);
                        if let Some(ending) = written.await {
                            return ending;
                        }
                    }
                    incoming = conn.ws.next() => {
                        conn.last_seen = Instant::now();
                        // Pings and pongs log nothing: no spans for them.
                        let span = match &incoming {
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Span::none(),
                            _ => self.span(),
                        };
                        let handled = self.on_incoming(conn, incoming).instrument(span);
                        let handled = Box::pin(handled);
                        if let Some(ending) = handled.await {
                            return ending;
                        }
                        // A `refresh` moves the expiry; re-arm only then.
                        if self.membership.exp().unwrap_or(0) != armed_exp {
                            armed_exp = self.membership.exp().unwrap_or(0);
                            match (&mut expiry, self.membership.expiry()) {
                                (Some(timer), Some(at)) => timer.as_mut().reset(at),
                                (timer, at) => *timer = at.map(|at| Box::pin(sleep_until(at))),
                            }
                        }
                    }
                    () = &mut heartbeat => {
                        let now = Instant::now();
                        let config = &self.state().config;
                        let (ping_interval, ping_timeout) = (config.ping_interval, config.ping_timeout);
                        match conn.ping_sent {
                            Some(sent) if conn.last_seen < sent => {
                                if now >= sent + ping_timeout {
                                    return Ending::Close(CloseCode::HEARTBEAT_TIMEOUT.frame());
                                }
                                heartbeat.as_mut().reset(sent + ping_timeout);
                            }
                            _ if now >= conn.last_seen + ping_interval => {
                                let ping = Box::pin(conn.send(Message::Ping(Default::default()), config.write_timeout));
                                if ping.await.is_err() {
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
    }

    /// Writes everything queued for the member (what the socket did not take at once),
    /// waiting for it to be writable, within `write_timeout`. A close request (it wakes
    /// `ready`) or shutdown interrupts a write stuck on a slow client.
    /// `None` while the connection goes on.
    async fn write_batch(
        &mut self,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Option<Ending> {
        let write_timeout = self.state().config.write_timeout;
        let member = self.membership.member().clone();
        let write = timeout(write_timeout, write_pending(&member));
        tokio::pin!(write);
        // A wake-up taken here that was not a close: handed back once the write is done,
        // so frames queued meanwhile are not left waiting for the next one.
        let mut woken = false;
        let written = loop {
            tokio::select! {
                biased;
                _ = shutdown.as_mut() => break None,
                _ = member.ready() => {
                    if member.close_requested() {
                        break None;
                    }
                    woken = true;
                }
                written = &mut write => break Some(written),
            }
        };
        let Some(written) = written else {
            let closed = self.closing();
            return Some(closed.await);
        };
        if woken {
            member.wake();
        }
        match written {
            Ok(Ok(Written {
                frames,
                close,
                since,
            })) => {
                self.state().metrics.batch_written(frames, since);
                close.map(Ending::Close)
            }
            Ok(Err(_)) => Some(Ending::Drop),
            Err(_) => {
                self.span().in_scope(|| {
                    tracing::debug!(conn = self.id(), "write stalled past --write-timeout");
                });
                Some(Ending::Drop)
            }
        }
    }

    /// [`Session::on_closing`] in the connection's span, boxed: its state is allocated
    /// only when the connection closes (see `serve`). Bound to a local before the
    /// `.await`, so the box, not the future, is what the caller's state holds meanwhile.
    fn closing(&mut self) -> Pin<Box<impl Future<Output = Ending> + '_>> {
        let span = self.span();
        Box::pin(self.on_closing().instrument(span))
    }

    /// A close was requested or shutdown began. A requested close (slow consumer, a group
    /// close that found the queue full) drops the queue; on shutdown what is already queued
    /// is still written, within `--write-timeout`, before 1012.
    async fn on_closing(&mut self) -> Ending {
        let member = self.membership.member();
        if let Some(frame) = member.requested_close() {
            let discarded = member.drop_unstarted();
            self.state().metrics.dropped_closed.inc_by(discarded as u64);
            return Ending::Close(frame);
        }
        match timeout(self.state().config.write_timeout, write_pending(member)).await {
            Ok(Ok(Written { frames, close, .. })) => {
                self.state().metrics.batch_written(frames, None);
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
                        .send(msg, self.state().config.write_timeout)
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

/// Resolves when the token's expiry timer fires; never without one. A `poll_fn` over the
/// reference rather than an `async fn`, whose state would add its own bytes to every idle
/// task's `select!`.
fn expired(timer: &mut Option<Pin<Box<Sleep>>>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match timer {
        Some(timer) => timer.as_mut().poll(cx),
        None => std::task::Poll::Pending,
    })
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::config::Config;

    /// The session's future is what every idle connection keeps, in a task tokio allocates
    /// with 112 bytes of its own, rounded up to 128: at up to 784 bytes the task is 896;
    /// one byte more makes it 1,024, 128 bytes more per idle connection. The same size in
    /// debug and release builds. (It is exactly 784: anything added to the idle state
    /// must be paid for by something taken out.)
    #[tokio::test]
    async fn the_session_task_fits_in_896_bytes() {
        let state = AppState::new(Config::try_parse_from(["herald"]).unwrap(), None);
        let permit = state.connections.clone().try_acquire_owned().unwrap();
        let member = Member::new(1, 8, state.shutdown.clone());
        let log = LogContext::new(None, false);
        let session = Session::new(state, member.clone(), permit, None, log);
        let ws =
            WebSocketStream::from_raw_socket(ReadAhead::new(MemberIo(member)), Role::Server, None)
                .await;
        let run = session.run(Connection::new(ws));
        let size = std::mem::size_of_val(&run);
        assert!(size <= 784, "the session future is {size} bytes");
    }
}
