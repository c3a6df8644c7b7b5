//! A request body that remembers whether it was read to the end, so a reply sent
//! before that can say `Connection: close`: hyper would otherwise close the connection
//! silently after the reply, and a pooled client's next request on it would fail.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// `Incoming`, observed.
pub(in crate::transport) struct TrackedBody {
    inner: Incoming,
    read_all: Arc<AtomicBool>,
}

impl TrackedBody {
    /// Wraps `inner`; the flag turns true once the body has been read to its end (at
    /// once for a request without a body).
    pub(super) fn new(inner: Incoming) -> (Self, Arc<AtomicBool>) {
        let read_all = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let body = Self {
            inner,
            read_all: read_all.clone(),
        };
        (body, read_all)
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            this.read_all.store(true, Ordering::Release);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
