//! Serving warp's routes over plain HTTP/1.1 with the limits warp's own server lacks:
//! read deadlines for request heads and idle keep-alive waits, a bounded head buffer,
//! a per-listener connection cap that evicts the longest-waiting connection, and a
//! shutdown that closes idle connections at once. HTTP/2 is not served (no h2c).
//!
//! Each listener gets its own slots, so a flood on the public listener cannot take
//! the connections `--api-listen` or `--metrics-listen` need.

mod activity;
mod body;
mod connection;
mod deadline;
mod slots;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::Filter;

pub(super) use body::TrackedBody;
pub use deadline::ReadDeadlines;

use super::router::Router;
use crate::metrics::{HttpClose, HttpConnectionMetrics};
use activity::Activity;
use slots::Slots;

/// Limits on every plain-HTTP connection of one listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Request-head and idle deadlines.
    pub deadlines: ReadDeadlines,
    /// Most bytes buffered for one request head (hyper answers 431 past it).
    pub max_head_bytes: usize,
    /// Most connections at once that are not WebSockets.
    pub max_connections: usize,
}

/// The peer address of the connection a request came on (warp's own is private to
/// warp's server, which herald does not use).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// Extracts the client's address, like `warp::addr::remote()`.
pub fn remote(
) -> impl Filter<Extract = (Option<SocketAddr>,), Error = std::convert::Infallible> + Clone {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| addr.map(|a| a.0))
}

/// The TCP stream under a connection [`serve`] upgraded, with the bytes hyper had read
/// past the request (usually none). Everything else of the HTTP connection (read
/// deadlines, slot bookkeeping, hyper's box around the socket) is dropped here, so an
/// idle WebSocket does not keep it. `Err` gives back an upgrade from another server.
pub(crate) fn upgraded_stream(upgraded: Upgraded) -> Result<(TcpStream, Bytes), Upgraded> {
    let parts = upgraded.downcast::<TokioIo<deadline::Deadlined>>()?;
    Ok((parts.io.into_inner().into_stream(), parts.read_buf))
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown`,
/// then stops accepting. Connection tasks run on `connections`, which the caller waits
/// for (bounded by the drain timeout). Open connections and the ones cut off are
/// counted in `metrics`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    connections: TaskTracker,
    metrics: HttpConnectionMetrics,
) {
    let slots = Slots::new(limits.max_connections, metrics.open.clone());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let slots = slots.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let Some(slot) = slots.admit().await else {
                metrics.closed(HttpClose::Refused);
                refuse(stream).await;
                return;
            };
            let activity = Activity::new(slots, slot, metrics.clone());
            connection::serve(stream, remote, router, activity, limits, shutdown, metrics).await;
        });
    }
}

/// The 503 for a connection over `--max-http-connections` when no connection can be
/// evicted, written straight to the socket (nothing of the request is read).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
retry-after: 1\r\n\
content-length: 99\r\n\r\n\
{\"error\":\"too_many_connections\",\"message\":\"HTTP connection limit reached (--max-http-connections)\"}";

/// How long the refusal may take to write before the socket is just dropped.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

async fn refuse(mut stream: TcpStream) {
    tracing::debug!("HTTP connection refused: every slot is busy (--max-http-connections)");
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await
    })
    .await;
}

/// Per-connection accept errors are the client's; anything else (usually EMFILE: out
/// of file descriptors) is logged and retried after a pause, which lets connections close.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_declares_its_body_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "too_many_connections");
    }
}
