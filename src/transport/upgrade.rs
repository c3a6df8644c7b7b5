//! The WebSocket upgrade, done by hand rather than with `warp::ws`.
//!
//! `warp::ws` gives no control over tungstenite's buffers (its 128 KiB read buffer cost
//! ~135 KiB per idle connection when measured here) and cannot choose a subprotocol.
//! Here the handshake headers are checked, the 101 is answered with
//! `Sec-WebSocket-Accept`, and the upgraded connection is wrapped with a small-buffer
//! [`WebSocketConfig`].

use std::net::SocketAddr;

use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::hyper::upgrade::OnUpgrade;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::admission::{self, Admission, Admitted};
use super::connection::Connection;
use super::http;
use super::observe::RequestId;
use super::session::{LogContext, Session};
use crate::api::ApiError;
use crate::hub::Member;
use crate::protocol::{GroupName, Resume};
use crate::state::AppState;

/// Bytes tungstenite reads from the socket at a time. tungstenite allocates this buffer
/// for every connection up front and keeps it while the connection is idle, so it is in
/// every idle connection's cost: 64 rather than 512 measured 0.5 KiB less RSS per
/// connection at 15,000 (2.16 vs 2.65 KiB; 2 KiB cost 1.3 KiB more than 512).
/// tungstenite asks for at most this much per read; `read_ahead` serves those reads
/// from socket reads of up to 16 KiB, so a frame of the default `--max-frame` (64 KiB)
/// takes about five `recvfrom`s, not 1,024.
const READ_BUFFER: usize = 64;
/// tungstenite writes only replies, pongs and close frames (notifications bypass it, see
/// `session`), each at once into the member's output, so it keeps no buffer to batch them.
const WRITE_BUFFER: usize = 0;

/// A validated upgrade request.
pub struct Handshake {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The upgrade request's id, which the session logs under.
    request_id: Option<RequestId>,
}

/// Checks the RFC 6455 handshake headers; a plain HTTP request gets 426.
pub fn handshake() -> impl Filter<Extract = (Handshake,), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::optional::<RequestId>())
        .and_then(
            |headers: HeaderMap, on_upgrade: Option<OnUpgrade>, id: Option<RequestId>| async move {
                check_handshake(&headers, on_upgrade, id).map_err(warp::reject::custom)
            },
        )
}

fn check_handshake(
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    request_id: Option<RequestId>,
) -> Result<Handshake, ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let connection_upgrade = text(header::CONNECTION)
        .split(',')
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade || !text(header::UPGRADE).eq_ignore_ascii_case("websocket") {
        return Err(ApiError::UpgradeRequired(
            "send Connection: Upgrade and Upgrade: websocket",
        ));
    }
    if text(header::SEC_WEBSOCKET_VERSION) != "13" {
        return Err(ApiError::UpgradeRequired(
            "only Sec-WebSocket-Version: 13 is supported",
        ));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| is_nonce(k.as_bytes()))
        .cloned()
        .ok_or(ApiError::UpgradeRequired(
            "Sec-WebSocket-Key is missing or malformed",
        ))?;
    let on_upgrade = on_upgrade.ok_or(ApiError::UpgradeRequired(
        "this connection cannot be upgraded",
    ))?;
    Ok(Handshake {
        key,
        on_upgrade,
        request_id,
    })
}

/// Whether `key` is the base64 encoding of 16 bytes (RFC 6455 §4.1): 21 characters of
/// the base64 alphabet, then one whose low 4 bits are zero (it carries only the last 2
/// bits of the 16th byte; the other 4 are padding), then `==`.
fn is_nonce(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |c: &u8| ALPHABET.iter().position(|a| a == c);
    match key {
        [body @ .., last, b'=', b'='] if body.len() == 21 => {
            body.iter().all(|c| sextet(c).is_some()) && sextet(last).is_some_and(|v| v & 0xF == 0)
        }
        _ => false,
    }
}

/// Answers an upgrade in three steps: admit (the token's right to the path's group,
/// shutdown, the connection limit), open the session (joining the personal group and the
/// path's group *before* answering, so a notify sent as soon as the client sees the 101
/// already reaches it; with `resume` (`?since=`), `subscribed` and the missed
/// notifications are queued first), then start the session task and answer 101. The task
/// takes over once hyper hands over the socket.
pub async fn accept(
    state: AppState,
    group: Option<GroupName>,
    resume: Option<Resume>,
    hs: Handshake,
    admission: Admission,
    remote: Option<SocketAddr>,
) -> Result<Response, ApiError> {
    let admitted = admission::admit(&state, group.as_ref(), admission.claims)
        .map_err(|refusal| refusal.counted(&state.metrics))?;
    let answer = switching_protocols(&hs.key, admission.protocol)?;
    let log = LogContext::new(hs.request_id.as_ref().map(|id| &id.0), group.is_some());
    let session = open_session(&state, admitted, group, resume, log).await?;
    state.metrics.connections_accepted.inc();
    start_session(&state, session, hs.on_upgrade, remote);
    Ok(answer)
}

/// The connection's member and session, joined to its personal group and `group`. If a
/// join fails the session leaves what it joined and the upgrade fails (503).
async fn open_session(
    state: &AppState,
    admitted: Admitted,
    group: Option<GroupName>,
    resume: Option<Resume>,
    log: LogContext,
) -> Result<Session, ApiError> {
    let Admitted { grant, permit } = admitted;
    let member = Member::for_user(
        state.next_conn_id(),
        state.config.send_queue as usize,
        state.shutdown.clone(),
        grant.as_ref().map(|g| g.user().clone()),
    );
    let mut session = Session::new(state.clone(), member, permit, grant, log);
    let joined = async {
        session.join_personal().await?;
        match (group, resume) {
            (Some(group), Some(from)) => session.resume(group, &from).await,
            (Some(group), None) => session.join(group).await.map(drop),
            (None, _) => Ok(()),
        }
    }
    .await;
    match joined {
        Ok(()) => Ok(session),
        Err(e) => {
            session.abandon().await;
            Err(e.into())
        }
    }
}

/// Spawns the upgrade task (tracked, so shutdown waits for it): it takes the TCP stream
/// hyper hands over after the 101 (leaving the HTTP connection's state behind), hands it
/// to the member (the hub's drains write notifications to it from then on), wraps the
/// member's reader/writer in a small-buffer [`WebSocketConfig`] and starts the session's
/// own task.
///
/// Two tasks rather than one: everything an async block captures stays in its future
/// for as long as the task lives, so a single task would keep the handshake's state (the
/// `OnUpgrade`, the config, a second copy of the session) beside the session's for the
/// connection's whole life. The session task holds only what the connection needs.
fn start_session(
    state: &AppState,
    session: Session,
    on_upgrade: OnUpgrade,
    remote: Option<SocketAddr>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(state.config.max_frame as usize))
        .max_frame_size(Some(state.config.max_frame as usize));
    // Under the upgrade request's own span, which is still open.
    // The socket is not attached yet: the request's peer address.
    let span = session.span_under(&tracing::Span::current(), || remote);
    let sessions = state.sessions.clone();
    let fut = async move {
        let ws = match on_upgrade.await {
            Ok(upgraded) => match http::upgraded_stream(upgraded) {
                Ok((tcp, read)) if read.is_empty() => {
                    // An empty view still holds hyper's whole read buffer.
                    drop(read);
                    let io = session.attach(tcp);
                    WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await
                }
                // The client's first frames arrived with the request.
                Ok((tcp, read)) => {
                    let read = read.to_vec();
                    let io = session.attach(tcp);
                    WebSocketStream::from_partially_read(io, read, Role::Server, Some(config)).await
                }
                Err(_) => {
                    tracing::error!("upgraded connection from another server; dropped");
                    return session.abandon().await;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return session.abandon().await;
            }
        };
        let conn = Connection::new(ws);
        sessions.spawn(session.run(conn));
    }
    .instrument(span);
    state.sessions.spawn(fut);
}

/// The 101 answer: `Sec-WebSocket-Accept` for the client's `key` and, when the client
/// offered one, the bearer subprotocol echoed back.
fn switching_protocols(
    key: &HeaderValue,
    protocol: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    let mut res = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = res.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|_| ApiError::Internal)?,
    );
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::is_nonce;

    #[test]
    fn a_key_must_be_base64_of_16_bytes() {
        assert!(is_nonce(b"dGhlIHNhbXBsZSBub25jZQ==")); // RFC 6455's example
        for bad in [
            &b"dGhlIHNhbXBsZSBub25jZQ"[..], // no padding
            b"dGhlIHNhbXBsZSBub25jZR==",    // low bits set: not 16 bytes
            b"dGhlIHNhbXBsZSBub25j!Q==",    // not base64
            b"AAAAAAAAAAAAAAAAAAAAAAAA",    // 24 characters of 18 bytes
            b"dGhlIHNhbXBsZSBub25jZQ==x",
            b"",
        ] {
            assert!(!is_nonce(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
