//! The socket of one connection: the adapter tungstenite reads and writes through,
//! finishing what a drain could not write at once, and ending the connection cleanly.
//!
//! The member owns the socket (see `hub::output`): notifications are written to it by the
//! hub's drains, and tungstenite's writes go through [`MemberIo`] into the same ordered
//! output, so every write to the socket happens in one place, under the member's lock.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::read_ahead::{ReadAhead, CHUNK};
use crate::hub::Member;
use crate::protocol::{Close, CloseCode};

/// The upgraded socket as tungstenite sees it: tungstenite's 64-byte reads are served
/// from larger socket reads (see `read_ahead`).
pub(super) type Socket = WebSocketStream<ReadAhead<MemberIo>>;

/// The longest herald waits for a client to answer its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(3);

/// tungstenite's view of the member's socket: reads come from the socket, writes go into
/// the member's ordered output (at once when nothing is queued ahead of them).
#[derive(Debug)]
pub struct MemberIo(pub(super) Member);

impl AsyncRead for MemberIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

impl AsyncWrite for MemberIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.0.reply(buf).map(|()| buf.len()))
    }

    /// Written or queued already; the session finishes the queue.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How a connection ends.
pub(super) enum Ending {
    /// Send this close, then wait briefly for the client's answer.
    Close(Close),
    /// The client closed: answer it (tungstenite queued the echo) and finish.
    ClientClosed,
    /// The socket is gone or stuck; just drop it.
    Drop,
}

/// What one [`write_pending`] did.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Notification frames completed.
    pub(super) frames: usize,
    /// The close queued after them (a group or user close), now due.
    pub(super) close: Option<Close>,
    /// When the backlog started queueing (delivery-lag metric).
    pub(super) since: Option<std::time::Instant>,
}

/// Writes what the member has queued, waiting for the socket to take it, up to a queued
/// close (group close), which it returns. Cancel-safe: the queue always holds what is
/// unwritten, and a partly written item stays at its front.
pub(super) async fn write_pending(member: &Member) -> io::Result<Written> {
    let mut out = Written::default();
    loop {
        let flushed = member.write_queued()?;
        out.frames += flushed.frames;
        if flushed.done {
            out.close = flushed.close;
            out.since = flushed.since;
            return Ok(out);
        }
        poll_fn(|cx| member.poll_writable(cx)).await?;
    }
}

/// The socket and heartbeat bookkeeping.
pub(super) struct Connection {
    pub(super) ws: Socket,
    /// When anything (a frame, a pong) last arrived from the client.
    pub(super) last_seen: Instant,
    /// When the outstanding heartbeat ping was sent.
    pub(super) ping_sent: Option<Instant>,
}

impl Connection {
    /// Wraps a freshly upgraded socket.
    pub(super) fn new(ws: Socket) -> Self {
        Self {
            ws,
            last_seen: Instant::now(),
            ping_sent: None,
        }
    }

    fn member(&self) -> &Member {
        &self.ws.get_ref().get_ref().0
    }

    /// Sends one frame through tungstenite now, bounded by `limit`.
    pub(super) async fn send(&mut self, msg: Message, limit: Duration) -> Result<(), ()> {
        match timeout(limit, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Ends the connection as `ending` says: at most `write_limit` to get the close frame
    /// out (a slow consumer may still be reading its backlog), then a short wait for the
    /// client's answer so the TCP close is clean. Releases the socket.
    pub(super) async fn finish(mut self, ending: Ending, write_limit: Duration) {
        match ending {
            Ending::Drop => {}
            Ending::ClientClosed => {
                let echo = async {
                    let _ = self.ws.flush().await;
                    write_pending(self.member()).await
                };
                let _ = timeout(CLOSE_HANDSHAKE, echo).await;
            }
            Ending::Close(close) => {
                let sent = async {
                    // The close frame is ordered behind a partly written frame (never
                    // inside it) and before anything not yet started.
                    self.ws
                        .send(Message::Close(Some(wire_close(&close))))
                        .await
                        .map_err(|_| ())?;
                    write_pending(self.member()).await.map_err(|_| ())
                };
                if matches!(timeout(write_limit, sent).await, Ok(Ok(_))) {
                    // Only a refused oversized frame leaves part of itself unread; after
                    // other protocol errors the client answers and expects the server to
                    // drop TCP first (RFC 6455 7.1.1), which waiting for its EOF would not.
                    let oversized = close.code == CloseCode::MESSAGE_TOO_BIG.code;
                    let _ = timeout(CLOSE_HANDSHAKE, async {
                        let mut answered = false;
                        while let Some(Ok(msg)) = self.ws.next().await {
                            answered |= msg.is_close();
                        }
                        if oversized && !answered {
                            discard_until_eof(self.ws.get_mut()).await;
                        }
                    })
                    .await;
                }
            }
        }
        self.member().release();
    }
}

/// Reads and drops what the client still sends, until it closes (or the read fails).
///
/// After a frame it refused for its size (over `--max-frame`) tungstenite reads no
/// further, so the rest of that frame stays unread; closing a socket with unread bytes
/// sends RST instead of FIN, which can reach the client before it has read the close
/// frame (a client that sent 64 KiB + 1 byte read "connection reset", not 1009). The
/// caller bounds this with the close-handshake timeout.
async fn discard_until_eof(io: &mut (impl AsyncRead + Unpin)) {
    // Allocated only while a connection closes after an error; CHUNK bytes per read.
    let mut sink = vec![0; CHUNK];
    while let Ok(1..) = io.read(&mut sink).await {}
}

/// herald's close as tungstenite's frame: the one place the transport type appears.
fn wire_close(close: &Close) -> CloseFrame {
    CloseFrame {
        code: WireCode::from(close.code),
        reason: close.reason.as_ref().into(),
    }
}
