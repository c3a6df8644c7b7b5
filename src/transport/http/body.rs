//! A request body that remembers whether it was read to the end, so a reply sent
//! before that can say `Connection: close`: hyper would otherwise close the connection
//! silently after the reply, and a pooled client's next request on it would fail.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::activity::Activity;

/// `Incoming`, observed.
pub(in crate::transport) struct TrackedBody {
    inner: Incoming,
    /// Told when the body has been read to its end (its connection's bookkeeping, so no
    /// allocation per request).
    activity: Arc<Activity>,
    /// The request's number on its connection.
    request: u64,
}

impl TrackedBody {
    /// Wraps `inner`, the body of `activity`'s request number `request`; the activity
    /// hears once it has been read to its end (at once for a request without a body).
    pub(super) fn new(inner: Incoming, activity: Arc<Activity>, request: u64) -> Self {
        if inner.is_end_stream() {
            activity.body_read(request);
        }
        Self {
            inner,
            activity,
            request,
        }
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
            this.activity.body_read(this.request);
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
