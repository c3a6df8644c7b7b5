//! The socket of one connection: writing queued frames with vectored writes, sending
//! replies through tungstenite, and ending the connection cleanly.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::Buf;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WireCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::hub::Outbound;
use crate::protocol::Close;

/// The upgraded socket, unsplit: one set of buffers per connection.
pub(super) type Socket = WebSocketStream<TcpStream>;

/// Most frames handed to one `writev` (Linux allows 1024; this keeps the array on the stack).
const MAX_IOV: usize = 64;

/// The longest herald waits for a client to answer its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(3);

/// How a connection ends.
pub(super) enum Ending {
    /// Send this close, then wait briefly for the client's answer.
    Close(Close),
    /// The client closed: answer it (tungstenite queued the echo) and finish.
    ClientClosed,
    /// The socket is gone or stuck; just drop it.
    Drop,
}

/// What one [`Connection::write_pending`] did.
pub(super) struct Written {
    /// Notification frames written whole.
    pub(super) frames: usize,
    /// The close queued after them (a group or user close), now due.
    pub(super) close: Option<Close>,
}

/// The socket, what is being written to it, and heartbeat bookkeeping.
pub(super) struct Connection {
    pub(super) ws: Socket,
    /// Taken from the member's queue and not yet fully written. The front frame may be
    /// partly written (`front_started`); the rest are untouched.
    pub(super) pending: VecDeque<Outbound>,
    /// Whether some bytes of the front pending frame are already on the wire.
    front_started: bool,
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
            pending: VecDeque::new(),
            front_started: false,
            last_seen: Instant::now(),
            ping_sent: None,
        }
    }

    /// Writes the pending frames with vectored writes, stopping at a queued close (group
    /// close), which it returns. Cancel-safe: `pending` always reflects what is unwritten.
    pub(super) async fn write_pending(&mut self) -> std::io::Result<Written> {
        let before = self.pending.len();
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
        let close = match self.pending.pop_front() {
            Some(Outbound::Close(frame)) => Some(frame),
            _ => None,
        };
        // Everything that left `pending` was written, except a close popped just now.
        let frames = before - self.pending.len() - usize::from(close.is_some());
        Ok(Written { frames, close })
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
    pub(super) fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_started);
        self.pending.truncate(keep);
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
    /// client's answer so the TCP close is clean.
    pub(super) async fn finish(mut self, ending: Ending, write_limit: Duration) {
        match ending {
            Ending::Drop => {}
            Ending::ClientClosed => {
                let _ = timeout(CLOSE_HANDSHAKE, self.ws.flush()).await;
            }
            Ending::Close(close) => {
                let sent = async {
                    // Complete a partly written frame, or the close frame would land inside it.
                    self.write_pending().await.map_err(|_| ())?;
                    self.ws
                        .send(Message::Close(Some(wire_close(&close))))
                        .await
                        .map_err(|_| ())
                };
                if matches!(timeout(write_limit, sent).await, Ok(Ok(()))) {
                    let _ = timeout(CLOSE_HANDSHAKE, async {
                        while let Some(Ok(_)) = self.ws.next().await {}
                    })
                    .await;
                }
            }
        }
    }
}

/// herald's close as tungstenite's frame: the one place the transport type appears.
fn wire_close(close: &Close) -> CloseFrame {
    CloseFrame {
        code: WireCode::from(close.code),
        reason: close.reason.as_ref().into(),
    }
}
