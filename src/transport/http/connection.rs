//! One plain-HTTP connection: HTTP/1.1 only (no h2c), a bounded request head, read
//! deadlines, `Connection: close` when a request body is left unread, and at shutdown
//! an immediate close unless a request is in flight.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warp::http::{header, HeaderValue, Request, StatusCode};
use warp::reply::Response;

use super::activity::{Activity, Phase};
use super::body::TrackedBody;
use super::deadline::Deadlined;
use super::HttpLimits;
use crate::metrics::{HttpClose, HttpConnectionMetrics};
use crate::transport::router::{Answer, Router};

/// Serves `stream` until the client leaves, a deadline passes, the connection is
/// evicted, it becomes a WebSocket, or shutdown; counts in `metrics` why herald cut
/// it off, if it did.
pub(super) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    activity: Arc<Activity>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    metrics: HttpConnectionMetrics,
) {
    let io = TokioIo::new(Deadlined::new(stream, activity.clone(), limits.deadlines));
    let handler = Handler {
        router,
        activity: activity.clone(),
        remote,
    };
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(limits.max_head_bytes)
        // Read deadlines are `Deadlined`'s job; hyper's own would also cut idle waits.
        .header_read_timeout(None)
        // Otherwise hyper reads the socket once more while each request is answered, to
        // notice a client that left; the request still holds its slice of hyper's read
        // buffer then, so that read allocates a fresh 8 KiB buffer for every request.
        // Without it, a client that leaves mid-request is noticed when the reply is
        // written, and a client that only shut down its sending side still gets it.
        .half_close(true)
        // A reply is a small head and a small body: copied into one buffer, they go out
        // in one `send`, cheaper than queueing the body and a two-part `writev`.
        .writev(false);
    let conn = builder.serve_connection(io, handler).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut evicted = false;
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = activity.evict.cancelled() => {
            tracing::debug!(%remote, "evicted while waiting for a request (--max-http-connections)");
            evicted = true;
            Ok(())
        }
        () = shutdown.cancelled() => {
            if activity.phase() == Phase::Waiting {
                // Nobody is owed an answer: close at once rather than hold the drain.
                Ok(())
            } else {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    // A passed deadline also surfaces as an error when hyper was inside a head; count
    // the deadline, which is the cause. One reason per connection.
    let too_large = ended.as_ref().is_err_and(hyper::Error::is_parse_too_large);
    let cut_off = evicted
        .then_some(HttpClose::Evicted)
        .or_else(|| activity.passed_deadline())
        .or(too_large.then_some(HttpClose::HeadTooLarge));
    if let Some(why) = cut_off {
        metrics.closed(why);
    }
    if let Err(e) = ended {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
    activity.end();
}

/// Runs the listener's routes for each request of one connection.
struct Handler {
    router: Router,
    activity: Arc<Activity>,
    remote: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response;
    type Error = Infallible;
    type Future = Handled;

    fn call(&self, req: Request<Incoming>) -> Handled {
        let request = self.activity.begin_request();
        let (parts, body) = req.into_parts();
        let body = TrackedBody::new(body, self.activity.clone(), request);
        let req = Request::from_parts(parts, body);
        Handled {
            answer: self.router.call(req, self.remote),
            request,
            activity: self.activity.clone(),
        }
    }
}

/// A request being answered, and what the connection does with the answer. A plain
/// struct rather than an `async` block: the answer is boxed already (`Answer`), and a
/// box around this would be a second allocation and copy per request.
pub(super) struct Handled {
    answer: Answer,
    /// The request's number on its connection.
    request: u64,
    activity: Arc<Activity>,
}

impl Future for Handled {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut res = ready!(Pin::new(&mut this.answer).poll(cx));
        let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        if !upgraded && !this.activity.was_body_read(this.request) {
            // herald will not read the rest of this request, so it cannot keep the
            // connection; say so, or a pooled client would reuse it and fail.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if res.status() == StatusCode::REQUEST_TIMEOUT {
            // Only an unfinished body gets 408, and the connection closes with it.
            this.activity.metrics.closed(HttpClose::BodyTimeout);
        }
        this.activity.end_request(upgraded);
        Poll::Ready(Ok(res))
    }
}
