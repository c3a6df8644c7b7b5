//! Large socket reads under tungstenite's small read buffer.
//!
//! tungstenite keeps its read buffer for the connection's whole life, so herald gives it
//! 64 bytes (see `upgrade`), and tungstenite never asks for more than that per read: a
//! frame of the default `--max-frame` (64 KiB) took 1,024 `read`s, CPU any client could
//! make the hub spend. [`ReadAhead`] reads from the socket into a per-thread scratch
//! buffer of [`CHUNK`] bytes instead and hands tungstenite what it asked for. The kernel
//! copies only what has arrived, so a pong still costs one read and a 64 KiB frame about
//! four. What tungstenite did not ask for yet is kept in an allocation of its exact size
//! until tungstenite reads it (within the same poll, unless a frame ended inside it) and
//! freed when drained: at most [`CHUNK`] bytes per connection while it is sending, and
//! only an empty `Option` while it is idle.
//!
//! Bytes never reorder or go missing: what was read ahead is always handed out before
//! the socket is read again; `Pending`, errors and end of stream come only from a read
//! of the socket itself (`Pending` with the socket's waker registered), never while bytes
//! are held, so tokio's readiness contract is the socket's own.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at most at once. 16 KiB: a frame of the default
/// `--max-frame` in four reads, and what was read ahead fits one allocation.
pub(super) const CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read target, one per thread: shared by every connection the thread serves
    /// (a read copies out of it before returning), so it costs nothing per connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; CHUNK].into_boxed_slice());
}

/// An [`AsyncRead`] + [`AsyncWrite`] that reads its inner stream [`CHUNK`] bytes at a
/// time whatever the caller's buffer; writes pass straight through.
#[derive(Debug)]
pub struct ReadAhead<R> {
    inner: R,
    /// Bytes read from `inner` and not handed out yet; `None` whenever there are none.
    /// Boxed so an idle connection carries one pointer.
    ahead: Option<Box<Ahead>>,
}

/// Bytes read ahead: `bytes[start..]` are still to be handed out.
#[derive(Debug)]
struct Ahead {
    bytes: Box<[u8]>,
    start: usize,
}

impl<R> ReadAhead<R> {
    /// Wraps `inner`; nothing is allocated until a read returns more than asked for.
    pub fn new(inner: R) -> Self {
        Self { inner, ahead: None }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes read ahead and not handed out yet (0 means nothing is held).
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.ahead.as_ref().map_or(0, |a| a.bytes.len() - a.start)
    }

    /// Hands out what was read ahead, as much as `buf` takes; frees it once drained.
    fn give_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let Some(ahead) = &mut self.ahead else {
            return false;
        };
        let rest = ahead.bytes.get(ahead.start..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        ahead.start += n;
        if ahead.start >= ahead.bytes.len() {
            self.ahead = None;
        }
        true
    }
}

impl<R: AsyncRead + Unpin> ReadAhead<R> {
    /// One read of `inner` into `scratch`: what `buf` has room for goes into it, the rest
    /// is kept for the next reads.
    fn read_through(
        &mut self,
        cx: &mut Context<'_>,
        scratch: &mut [u8],
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = ReadBuf::new(scratch);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut chunk))?;
        let got = chunk.filled();
        let now = got.len().min(buf.remaining());
        buf.put_slice(&got[..now]);
        if now < got.len() {
            self.ahead = Some(Box::new(Ahead {
                bytes: got[now..].into(),
                start: 0,
            }));
        }
        Poll::Ready(Ok(()))
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ReadAhead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 || this.give_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= CHUNK {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let through = SCRATCH.try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => Some(this.read_through(cx, &mut scratch, buf)),
            Err(_) => None,
        });
        match through {
            Ok(Some(done)) => done,
            // The scratch is busy (no read re-enters another, so this does not happen)
            // or gone (the thread is exiting): read as asked, which is only slower.
            Ok(None) | Err(_) => Pin::new(&mut this.inner).poll_read(cx, buf),
        }
    }
}

impl<R: AsyncWrite + Unpin> AsyncWrite for ReadAhead<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
