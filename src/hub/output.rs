//! A connection's ordered output: the socket, and what could not be written to it yet.
//!
//! Every byte for a connection goes through here, under its member's lock: notification
//! frames (written by the hub's drain, see `drain`), and tungstenite's replies, pongs and
//! close frames from the session. What the socket does not take at once stays queued and
//! the session finishes it when the socket is writable. A partly written item stays at
//! the front until it is complete, so bytes of two frames never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use socket2::SockRef;
use tokio::io::{Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::protocol::Close;

/// Most items handed to one `writev` (Linux allows 1024; this keeps the array on the stack).
const MAX_IOV: usize = 64;

/// Something queued for a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A complete, encoded WebSocket frame shared with other recipients.
    Frame(Bytes),
    /// Bytes tungstenite wrote (a reply, a pong, a close frame): they go before the
    /// queued frames, as they did when tungstenite wrote to the socket itself.
    Reply(Bytes),
    /// Close with this frame once everything queued before it is written.
    Close(Close),
}

/// The socket and its backlog. `Default` is a connection whose socket is not attached yet:
/// everything queues until the session attaches it.
#[derive(Debug, Default)]
#[repr(C)]
pub(super) struct Output {
    pub(super) queue: VecDeque<Outbound>,
    pub(super) socket: Option<TcpStream>,
    /// How many items at the front must go before anything else: a partly written item
    /// and the replies queued behind it. Replies and resumed frames are put after them.
    lead: usize,
    /// When the first queued notification frame was queued (delivery-lag metric).
    pub(super) since: Option<Instant>,
}

/// What one [`Output::write_queued`] did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Notification frames completed.
    pub frames: usize,
    /// The socket took everything up to a queued close (or all of it).
    pub done: bool,
    /// The close queued after the written frames, now due (only with `done`).
    pub close: Option<Close>,
    /// When the written backlog started queueing (only with `done`).
    pub since: Option<Instant>,
}

impl Output {
    /// Queues a notification frame (or its unwritten rest) at the back.
    pub(super) fn push_back(&mut self, item: Outbound, at: Instant) {
        if self.queue.is_empty() {
            self.since = Some(at);
        }
        if self.queue.capacity() == 0 {
            // Room for one, not the four a first push would reserve: a drain usually
            // writes the frame before another comes, and a 40-byte block is one of
            // malloc's cheap small sizes where 160 bytes (once a large fan-out has
            // a thousand of them live) goes through its slower bins.
            self.queue.reserve_exact(1);
        }
        self.queue.push_back(item);
    }

    /// Puts `frames` after the lead (a partly written item, replies) and before every
    /// other queued item, in order.
    pub(super) fn prepend(&mut self, frames: Vec<Bytes>) {
        if self.queue.is_empty() {
            self.since = Some(Instant::now());
        }
        for (i, frame) in frames.into_iter().enumerate() {
            self.queue.insert(self.lead + i, Outbound::Frame(frame));
        }
    }

    /// Writes tungstenite's bytes: at once when nothing must go before them, else queued
    /// after the lead. Returns true when something was queued (the session must finish it).
    pub(super) fn reply(&mut self, buf: &[u8]) -> io::Result<bool> {
        let Some(socket) = &self.socket else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let mut written = 0;
        if self.lead == 0 {
            match send(socket, buf) {
                Ok(n) => written = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if written == buf.len() {
            return Ok(false);
        }
        let rest = Bytes::copy_from_slice(&buf[written..]);
        self.queue.insert(self.lead, Outbound::Reply(rest));
        self.lead += 1;
        Ok(true)
    }

    /// Writes `frames` straight to the socket, in order, with vectored writes: the
    /// caller checked that nothing is queued, nothing is held and the socket is
    /// attached. Returns how many frames the socket took whole, and true when the rest
    /// was queued (a partly written frame as the lead): the session must finish it. An
    /// error queues the rest, so the session's write meets the error and closes the
    /// connection as it would for a queued frame.
    pub(super) fn write_through(
        &mut self,
        frames: &[Bytes],
        at: Instant,
    ) -> (usize, io::Result<bool>) {
        let Some(socket) = &self.socket else {
            return (0, Err(io::ErrorKind::BrokenPipe.into()));
        };
        if frames.is_empty() {
            return (0, Ok(false));
        }
        // Frames taken whole, and bytes taken of the next one.
        let (mut done, mut partial) = (0, 0);
        let result = loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut offered = 0;
            let rest = frames[done..].iter().take(MAX_IOV);
            for (i, (slot, frame)) in iov.iter_mut().zip(rest).enumerate() {
                let bytes = if i == 0 {
                    &frame[partial..]
                } else {
                    &frame[..]
                };
                *slot = IoSlice::new(bytes);
                offered += bytes.len();
            }
            let n = (frames.len() - done).min(MAX_IOV);
            match send_vectored(socket, &iov[..n]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(mut taken) => {
                    let full = taken == offered;
                    while taken > 0 {
                        let left = frames[done].len() - partial;
                        if taken < left {
                            partial += taken;
                            break;
                        }
                        taken -= left;
                        done += 1;
                        partial = 0;
                    }
                    if done == frames.len() {
                        return (done, Ok(false));
                    }
                    if !full {
                        // The socket is full: the next write would only say so.
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if partial > 0 {
            self.lead = 1;
        }
        self.push_back(Outbound::Frame(frames[done].slice(partial..)), at);
        for frame in &frames[done + 1..] {
            self.push_back(Outbound::Frame(frame.clone()), at);
        }
        (done, result.map(|()| true))
    }

    /// Writes the queue with vectored writes until the socket pushes back or a queued
    /// close is reached (popped and returned when `pop_close`, else left for the session).
    pub(super) fn write_queued(&mut self, pop_close: bool) -> io::Result<Flushed> {
        let mut out = Flushed::default();
        let Some(socket) = &self.socket else {
            return Ok(out);
        };
        loop {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (slot, item) in iov.iter_mut().zip(self.queue.iter()) {
                match item {
                    Outbound::Frame(bytes) | Outbound::Reply(bytes) => *slot = IoSlice::new(bytes),
                    Outbound::Close(_) => break,
                }
                n += 1;
            }
            if n == 0 {
                break;
            }
            match send_vectored(socket, &iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => out.frames += advance(&mut self.queue, &mut self.lead, written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) => return Err(e),
            }
        }
        out.done = true;
        if pop_close {
            if let Some(Outbound::Close(_)) = self.queue.front() {
                if let Some(Outbound::Close(close)) = self.queue.pop_front() {
                    out.close = Some(close);
                }
            }
        }
        if self.queue.is_empty() {
            // An idle connection's queue owns no memory.
            self.queue = VecDeque::new();
        }
        if self.queue.is_empty() || out.close.is_some() {
            out.since = self.since.take();
        }
        Ok(out)
    }

    /// Drops every queued item that has not started and is not a reply; returns how many
    /// notification frames were dropped.
    pub(super) fn drop_unstarted(&mut self) -> usize {
        let dropped = self
            .queue
            .iter()
            .skip(self.lead)
            .filter(|i| matches!(i, Outbound::Frame(_)))
            .count();
        self.queue.truncate(self.lead);
        dropped
    }

    /// Takes the whole queue (tests and the end of a connection).
    pub(super) fn take(&mut self) -> VecDeque<Outbound> {
        self.lead = 0;
        self.since = None;
        std::mem::take(&mut self.queue)
    }

    /// Polls for the socket to accept writes again.
    pub(super) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.socket {
            Some(socket) => socket.poll_write_ready(cx),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    /// Reads what the client sent; an empty read once the socket is released.
    pub(super) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(socket) = &self.socket else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match socket.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            match socket.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: poll again, which registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// One `send` (not `write`: a socket needs none of the file layer `write` and `writev` go
/// through, which `perf` shows as a few percent of a fan-out's CPU).
fn send(socket: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    optimistic(socket, || SockRef::from(socket).send(buf))
}

/// [`send`] of several slices: one `send` for one slice, else one `sendmsg`.
fn send_vectored(socket: &TcpStream, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    match iov {
        [one] => send(socket, one),
        _ => optimistic(socket, || SockRef::from(socket).send_vectored(iov)),
    }
}

/// Runs the non-blocking write `op` straight away: most writes succeed, and checking
/// tokio's readiness first costs a cache miss per member on a large fan-out. Only when
/// the socket pushes back is `op` tried again through tokio, which reads the readiness
/// *before* the call, so that a second `WouldBlock` clears exactly what it saw (never a
/// writable event that arrived in between) and the session's wait for writability
/// cannot miss one.
fn optimistic(socket: &TcpStream, op: impl Fn() -> io::Result<usize>) -> io::Result<usize> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.try_io(Interest::WRITABLE, op),
        done => done,
    }
}

/// Drops the first `written` bytes of the items at the front of `queue`; returns how
/// many notification frames were completed.
fn advance(queue: &mut VecDeque<Outbound>, lead: &mut usize, mut written: usize) -> usize {
    let mut frames = 0;
    while written > 0 {
        let (bytes, frame) = match queue.front_mut() {
            Some(Outbound::Frame(b)) => (b, true),
            Some(Outbound::Reply(b)) => (b, false),
            _ => break,
        };
        if bytes.len() > written {
            bytes.advance(written);
            *lead = (*lead).max(1);
            break;
        }
        written -= bytes.len();
        queue.pop_front();
        *lead = lead.saturating_sub(1);
        frames += usize::from(frame);
    }
    frames
}
