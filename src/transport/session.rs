//! One task per WebSocket connection.
//!
//! The task owns the socket (not split: one buffer set per connection) and `select!`s
//! over four things: a close request (slow consumer, group close, shutdown), the outbound
//! queue, frames from the client, and the heartbeat timer. Queued frames are written in a
//! batch and flushed once per wake-up, which measured ~10x the throughput of a flush per
//! frame on this machine.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::hyper::upgrade::Upgraded;

use crate::broker::BrokerError;
use crate::hub::Member;
use crate::protocol::{
    ClientFrame, CloseCode, EventName, FrameError, GroupName, Offset, ServerFrame,
};
use crate::state::AppState;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Most queued frames written per wake-up before the task looks at its other inputs again.
const BATCH: usize = 256;

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
    outbox: mpsc::Receiver<Message>,
    /// Groups this connection is in; usually a handful, bounded by `--max-subscriptions`.
    groups: HashSet<GroupName>,
    /// Held for the connection's life: returning it admits the next connection.
    _permit: OwnedSemaphorePermit,
    remote: Option<SocketAddr>,
}

impl Session {
    /// A session for `member`, whose queue's receiving end is `outbox`.
    pub fn new(
        state: AppState,
        member: Member,
        outbox: mpsc::Receiver<Message>,
        permit: OwnedSemaphorePermit,
        remote: Option<SocketAddr>,
    ) -> Self {
        Self {
            state,
            member,
            outbox,
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
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = self.member.closing() => return self.on_closing(conn).await,
                n = self.outbox.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return Ending::Drop;
                    }
                    let member = self.member.clone();
                    tokio::select! {
                        biased;
                        _ = member.closing() => return self.on_closing(conn).await,
                        written = timeout(write_timeout, conn.write_batch(&mut batch)) => match written {
                            Ok(Ok(None)) => {}
                            Ok(Ok(Some(close))) => return Ending::Close(close),
                            Ok(Err(_)) => return Ending::Drop,
                            Err(_) => {
                                tracing::debug!(conn = member.id(), "write stalled past --write-timeout");
                                return Ending::Drop;
                            }
                        },
                    }
                    batch.clear();
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

    /// A close was requested or shutdown began. A requested close (slow consumer, group
    /// close overflow) drops the queue; on shutdown what is already queued is still
    /// written, within `--write-timeout`, before 1012.
    async fn on_closing(&mut self, conn: &mut Connection) -> Ending {
        if let Some(frame) = self.member.requested_close() {
            return Ending::Close(frame);
        }
        let mut queued = Vec::new();
        while let Ok(msg) = self.outbox.try_recv() {
            queued.push(msg);
        }
        match timeout(
            self.state.config.write_timeout,
            conn.write_batch(&mut queued),
        )
        .await
        {
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
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            Ending::Close(CloseCode::MESSAGE_TOO_BIG.frame())
        }
        WsError::Capacity(_) => Ending::Close(CloseCode::MESSAGE_TOO_BIG.frame()),
        WsError::Utf8(_) => Ending::Close(CloseCode::INVALID_PAYLOAD.frame()),
        WsError::Protocol(_) => Ending::Close(CloseCode::PROTOCOL_ERROR.frame()),
        _ => Ending::Drop,
    }
}

/// The socket plus heartbeat bookkeeping.
struct Connection {
    ws: Socket,
    /// When anything (a frame, a pong) last arrived from the client.
    last_seen: Instant,
    /// When the outstanding heartbeat ping was sent.
    ping_sent: Option<Instant>,
}

impl Connection {
    /// Feeds every frame of `batch`, then flushes once. Returns the close frame if the
    /// batch ended with a queued close (group close).
    async fn write_batch(
        &mut self,
        batch: &mut Vec<Message>,
    ) -> Result<Option<CloseFrame>, WsError> {
        for msg in batch.drain(..) {
            if let Message::Close(frame) = msg {
                self.ws.flush().await?;
                return Ok(Some(frame.unwrap_or_else(|| CloseCode::NORMAL.frame())));
            }
            self.ws.feed(msg).await?;
        }
        self.ws.flush().await?;
        Ok(None)
    }

    /// Sends one frame now, bounded by `limit`.
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
                if self
                    .send(Message::Close(Some(frame)), write_limit)
                    .await
                    .is_ok()
                {
                    let _ = timeout(CLOSE_HANDSHAKE, async {
                        while let Some(Ok(_)) = self.ws.next().await {}
                    })
                    .await;
                }
            }
        }
    }
}
