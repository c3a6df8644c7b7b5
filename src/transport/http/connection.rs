//! One plain-HTTP connection: HTTP/1.1 only (no h2c), a bounded request head, read
//! deadlines, `Connection: close` when a request body is left unread, and at shutdown
//! an immediate close unless a request is in flight.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, Request, StatusCode};
use warp::reply::Response;

use super::activity::{Activity, Phase};
use super::body::TrackedBody;
use super::deadline::Deadlined;
use super::{ClientAddr, HttpLimits};

/// Serves `stream` until the client leaves, a deadline passes, the connection is
/// evicted, it becomes a WebSocket, or shutdown.
pub(super) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    routes: BoxedFilter<(Response,)>,
    activity: Arc<Activity>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(Deadlined::new(stream, activity.clone(), limits.deadlines));
    let handler = Handler {
        routes: TowerToHyperService::new(warp::service(routes)),
        activity: activity.clone(),
        remote,
    };
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(limits.max_head_bytes)
        // Read deadlines are `Deadlined`'s job; hyper's own would also cut idle waits.
        .header_read_timeout(None);
    let conn = builder.serve_connection(io, handler).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = activity.evict.cancelled() => {
            tracing::debug!(%remote, "evicted while waiting for a request (--max-http-connections)");
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
    if let Err(e) = ended {
        tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
    activity.end();
}

/// Runs warp's routes for each request of one connection.
struct Handler<S> {
    routes: S,
    activity: Arc<Activity>,
    remote: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for Handler<S>
where
    S: hyper::service::Service<Request<TrackedBody>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.activity.begin_request();
        let (parts, body) = req.into_parts();
        let (body, read_all) = TrackedBody::new(body);
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(ClientAddr(self.remote));
        let answer = self.routes.call(req);
        let activity = self.activity.clone();
        Box::pin(async move {
            let mut res = match answer.await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
            if !upgraded && !read_all.load(Ordering::Acquire) {
                // herald will not read the rest of this request, so it cannot keep the
                // connection; say so, or a pooled client would reuse it and fail.
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            activity.end_request(upgraded);
            Ok(res)
        })
    }
}
