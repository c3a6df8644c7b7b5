//! The socket of a plain-HTTP connection, with read deadlines: a request head must
//! arrive whole within `--http-header-timeout` of its first byte (or of the connection's
//! start), and a kept-alive connection may wait `--http-idle-timeout` for its next
//! request. Deadlines count from those moments, not per read, so a client dribbling one
//! byte at a time gains nothing. Request bodies have their own timeout (`api::body`)
//! and WebSockets theirs (the session's heartbeat).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::activity::{Activity, Phase};
use crate::metrics::HttpClose;

/// The read deadlines of plain-HTTP connections.
#[derive(Debug, Clone, Copy)]
pub struct ReadDeadlines {
    /// From the first byte of a request head (or the connection's start) to its end.
    pub header: Duration,
    /// Between one answer and the next request's first byte.
    pub idle: Duration,
}

/// A TCP stream that fails reads with `TimedOut` once the current deadline passes.
pub(super) struct Deadlined {
    stream: TcpStream,
    activity: Arc<Activity>,
    deadlines: ReadDeadlines,
    /// `Activity::answered` when the current wait began.
    answered: u64,
    /// When the current wait for a request began.
    waiting_since: Since,
    /// When the first byte of the current request head arrived, once one has.
    head_since: Option<Since>,
    timer: Pin<Box<Sleep>>,
}

/// When a wait began. The clock is read only once a deadline is needed, that is when a
/// read would wait: most waits end at the first read (a whole request head arrives at
/// once), and a read of the clock per request and per head is a measurable part of
/// answering one. A wait that needs its deadline is stamped at its first read that
/// would wait, right after (microseconds after) it began.
#[derive(Debug, Clone, Copy)]
enum Since {
    /// Began, not stamped yet.
    Now,
    At(Instant),
}

impl Since {
    /// When the wait began, stamping it now if it was not yet.
    fn stamp(&mut self) -> Instant {
        match *self {
            Self::At(at) => at,
            Self::Now => {
                let now = Instant::now();
                *self = Self::At(now);
                now
            }
        }
    }
}

impl Deadlined {
    /// Wraps a freshly accepted stream; its first request head is due within the header
    /// timeout (a client that connects and says nothing is a slow head, not an idle one).
    pub(super) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        deadlines: ReadDeadlines,
    ) -> Self {
        let now = Instant::now();
        Self {
            stream,
            answered: activity.answered(),
            activity,
            deadlines,
            waiting_since: Since::At(now),
            head_since: Some(Since::At(now)),
            timer: Box::pin(tokio::time::sleep_until(now + deadlines.header)),
        }
    }

    /// The bare stream, once the connection is a WebSocket: the deadlines, their timer
    /// and the connection's HTTP bookkeeping are dropped with the wrapper.
    pub(super) fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Notes a new wait if a request was answered since the last read.
    fn follow(&mut self) {
        let answered = self.activity.answered();
        if answered != self.answered {
            self.answered = answered;
            self.waiting_since = Since::Now;
            self.head_since = None;
        }
    }

    /// The deadline of the current wait.
    fn deadline(&mut self) -> Instant {
        match &mut self.head_since {
            Some(start) => start.stamp() + self.deadlines.header,
            None => self.waiting_since.stamp() + self.deadlines.idle,
        }
    }
}

impl AsyncRead for Deadlined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        match this.activity.phase() {
            Phase::Waiting => {}
            Phase::Busy => {
                // hyper reads ahead while a request is handled and then waits for the
                // socket; the answer must wake it to start the idle deadline.
                if read.is_pending() {
                    this.activity.wake_reader_on_answer(cx.waker());
                }
                return read;
            }
            Phase::Upgraded => return read,
        }
        this.follow();
        match read {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.head_since.is_none() {
                    this.head_since = Some(Since::Now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = this.deadline();
                // The timer is only moved earlier here. Each answer pushes the idle
                // deadline later, and re-arming the timer wheel for that on every request
                // costs more than the rest of this wrapper: a timer that fires before the
                // current deadline is re-armed for it then instead.
                if deadline < this.timer.deadline() {
                    this.timer.as_mut().reset(deadline);
                }
                loop {
                    ready!(this.timer.as_mut().poll(cx));
                    if this.timer.deadline() >= deadline {
                        break;
                    }
                    this.timer.as_mut().reset(deadline);
                }
                let (why, which) = if this.head_since.is_some() {
                    (
                        HttpClose::HeaderTimeout,
                        "request head not received in time (--http-header-timeout)",
                    )
                } else {
                    (
                        HttpClose::IdleTimeout,
                        "idle connection (--http-idle-timeout)",
                    )
                };
                this.activity.deadline_passed(why);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, which)))
            }
        }
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
