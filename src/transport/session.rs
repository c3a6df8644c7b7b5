//! One task per WebSocket connection.
//!
//! The task owns the socket (not split: one set of buffers per connection) and
//! `select!`s over four things: a close request (slow consumer, shutdown), the outbound
//! queue, frames from the client, and the heartbeat timer.
//!
//! Notifications arrive as complete encoded frames shared by every recipient, so they are
//! written straight to the socket with vectored writes: everything queued goes out in as
//! few syscalls as possible, with no per-connection write buffer to keep a burst's
//! high-water mark. tungstenite still reads client frames, answers pings and writes the
//! small replies and close frames; it is flushed before raw writes so frames never
//! interleave.

use std::collections::{HashSet, VecDeque};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Buf;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::hyper::upgrade::Upgraded;

use crate::broker::BrokerError;
use crate::hub::{Member, Outbound};
use crate::protocol::{
    ClientFrame, CloseCode, EventName, FrameError, GroupName, Offset, ServerFrame,
};
use crate::state::AppState;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most frames handed to one `writev` (Linux allows 1024; this keeps the array on the stack).
const MAX_IOV: usize = 64;

/// The longest herald waits for a client to answer its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(3);

/// How a connection ends.
enum Ending {
    /// Send this close frame, then wait briefly for the client's answer.
    Close(CloseFrame),
    /// The client closed: answer it (tungstenite queued the echo) and finish.
    ClientClosed,
    /// The socket is gone or stuck; just drop it.
    Drop,
}

/// A connection's state before and while its task runs.
pub struct Session {
    state: AppState,
    member: Member,
    /// Groups this connection is in; usually a handful, bounded by `--max-subscriptions`.
    groups: HashSet<GroupName>,
    /// Held for the connection's life: returning it admits the next connection.
    _permit: OwnedSemaphorePermit,
    remote: Option<SocketAddr>,
}

impl Session {
    /// A session for `member`.
    pub fn new(
        state: AppState,
        member: Member,
        permit: OwnedSemaphorePermit,
        remote: Option<SocketAddr>,
    ) -> Self {
        Self {
            state,
            member,
            groups: HashSet::new(),
            _permit: permit,
            remote,
        }
    }

    /// Joins `group`; returns its offset at the moment of joining.
    pub async fn join(&mut self, group: GroupName) -> Result<Offset, BrokerError> {
        let offset = self
            .state
            .broker
            .subscribe(&group, self.member.clone())
            .await?;
        self.groups.insert(group);
        Ok(offset)
    }

    /// Leaves every group; used when the upgrade never completed.
    pub async fn abandon(mut self) {
        self.leave_all().await;
    }

    async fn leave_all(&mut self) {
        self.member.end();
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
        let mut conn = Connection {
            ws,
            pending: VecDeque::new(),
            front_started: false,
            last_seen: Instant::now(),
            ping_sent: None,
        };
        let ending = self.serve(&mut conn).await;
        // Leave first, so no more frames are queued for a connection that is going away.
        self.leave_all().await;
        let code = match &ending {
            Ending::Close(frame) => Some(u16::from(frame.code)),
            _ => None,
        };
        conn.finish(ending, self.state.config.write_timeout).await;
        tracing::debug!(conn = self.member.id(), ?code, "connection closed");
    }

    async fn serve(&mut self, conn: &mut Connection) -> Ending {
        let ping_interval = self.state.config.ping_interval;
        let ping_timeout = self.state.config.ping_timeout;
        let write_timeout = self.state.config.write_timeout;
        let heartbeat = sleep_until(Instant::now() + ping_interval);
        tokio::pin!(heartbeat);
        let member = self.member.clone();
        loop {
            tokio::select! {
                biased;
                _ = member.closing() => return self.on_closing(conn).await,
                _ = member.ready() => {
                    conn.pending = member.take();
                    tokio::select! {
                        biased;
                        _ = member.closing() => return self.on_closing(conn).await,
                        written = timeout(write_timeout, conn.write_pending()) => match written {
                            Ok(Ok(None)) => {}
                            Ok(Ok(Some(close))) => return Ending::Close(close),
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
                    if let Some(ending) = self.on_incoming(conn, incoming).await {
                        return ending;
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
                            if conn.send(Message::Ping(Default::default()), write_timeout).await.is_err() {
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
            conn.drop_unstarted();
            return Ending::Close(frame);
        }
        conn.pending.extend(self.member.take());
        match timeout(self.state.config.write_timeout, conn.write_pending()).await {
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
                let reply = match self.on_frame(&text).await {
                    Ok(Some(reply)) => reply,
                    Ok(None) => return None,
                    Err(e) => e.to_frame(),
                };
                match conn
                    .send(
                        Message::text(reply.to_json()),
                        self.state.config.write_timeout,
                    )
                    .await
                {
                    Ok(()) => None,
                    Err(_) => Some(Ending::Drop),
                }
            }
            Message::Binary(_) => Some(Ending::Close(CloseCode::UNSUPPORTED_DATA.frame())),
            Message::Close(_) => Some(Ending::ClientClosed),
            // tungstenite answers pings itself; a pong only needs `last_seen`, set above.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }

    /// Handles one client frame; `Ok(None)` means no reply is due.
    async fn on_frame(&mut self, text: &str) -> Result<Option<ServerFrame>, FrameError> {
        match ClientFrame::parse(text)? {
            ClientFrame::Ping => Ok(Some(ServerFrame::Pong)),
            ClientFrame::Subscribe { group } => {
                let name = parse_group(&group)?;
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
                Ok(Some(ServerFrame::Subscribed { group, offset }))
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
                Ok(Some(ServerFrame::Unsubscribed { group }))
            }
            ClientFrame::Publish { group, event, data } => {
                if !self.state.config.client_publish {
                    return Err(FrameError::PublishDisabled);
                }
                let name = parse_group(&group)?;
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
                    .broker
                    .publish(&name, &event, &data)
                    .await
                    .map_err(|_| FrameError::Unavailable)?;
                // The publisher is a member, so the notification itself is its acknowledgement.
                Ok(None)
            }
        }
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
        WsError::Protocol(_) => Ending::Close(CloseCode::PROTOCOL_ERROR.frame()),
        _ => Ending::Drop,
    }
}

/// The socket, what is being written to it, and heartbeat bookkeeping.
struct Connection {
    ws: Socket,
    /// Taken from the member's queue and not yet fully written. The front frame may be
    /// partly written (`front_started`); the rest are untouched.
    pending: VecDeque<Outbound>,
    /// Whether some bytes of the front pending frame are already on the wire.
    front_started: bool,
    /// When anything (a frame, a pong) last arrived from the client.
    last_seen: Instant,
    /// When the outstanding heartbeat ping was sent.
    ping_sent: Option<Instant>,
}

impl Connection {
    /// Writes the pending frames with vectored writes, stopping at a queued close (group
    /// close), which it returns. Cancel-safe: `pending` always reflects what is unwritten.
    async fn write_pending(&mut self) -> std::io::Result<Option<CloseFrame>> {
        // Anything tungstenite buffered (an automatic pong) goes first, whole.
        self.ws.flush().await.map_err(std::io::Error::other)?;
        loop {
            let written = {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let mut n = 0;
                for (slot, item) in iov.iter_mut().zip(self.pending.iter()) {
                    let Outbound::Frame(bytes) = item else { break };
                    *slot = IoSlice::new(bytes);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                self.ws.get_mut().write_vectored(&iov[..n]).await?
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(written);
        }
        self.ws.get_mut().flush().await?;
        Ok(match self.pending.pop_front() {
            Some(Outbound::Close(frame)) => Some(frame),
            _ => None,
        })
    }

    /// Drops the first `written` bytes of the frames at the front of `pending`.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(Outbound::Frame(front)) = self.pending.front_mut() else {
                return;
            };
            if front.len() > written {
                front.advance(written);
                self.front_started = true;
                return;
            }
            written -= front.len();
            self.pending.pop_front();
            self.front_started = false;
        }
    }

    /// Keeps only a partly written front frame (it must be completed before anything
    /// else can be written) and drops everything not yet started.
    fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_started);
        self.pending.truncate(keep);
    }

    /// Sends one frame through tungstenite now, bounded by `limit`.
    async fn send(&mut self, msg: Message, limit: Duration) -> Result<(), ()> {
        match timeout(limit, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Ends the connection as `ending` says: at most `write_limit` to get the close frame
    /// out (a slow consumer may still be reading its backlog), then a short wait for the
    /// client's answer so the TCP close is clean.
    async fn finish(mut self, ending: Ending, write_limit: Duration) {
        match ending {
            Ending::Drop => {}
            Ending::ClientClosed => {
                let _ = timeout(CLOSE_HANDSHAKE, self.ws.flush()).await;
            }
            Ending::Close(frame) => {
                let close = async {
                    // Complete a partly written frame, or the close frame would land inside it.
                    self.write_pending().await.map_err(|_| ())?;
                    self.ws
                        .send(Message::Close(Some(frame)))
                        .await
                        .map_err(|_| ())
                };
                if matches!(timeout(write_limit, close).await, Ok(Ok(()))) {
                    let _ = timeout(CLOSE_HANDSHAKE, async {
                        while let Some(Ok(_)) = self.ws.next().await {}
                    })
                    .await;
                }
            }
        }
    }
}
