//! The reference server's HTTP/1.1 side: keep-alive requests parsed by hand with
//! httparse, routed by a small table, until the connection closes or upgrades.

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{notify, valid_name, State};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

/// What an upgrade request leaves for the WebSocket: the group, the client's key and any
/// bytes read past the request.
pub struct Upgrade {
    pub group: String,
    pub key: String,
    pub rest: Vec<u8>,
}

/// Serves HTTP/1.1 keep-alive requests; returns the upgrade request, if one came.
pub async fn serve(stream: &mut TcpStream, state: &State) -> Option<Upgrade> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        let head_len = read_head(stream, &mut buf).await?;
        let req = match Request::parse(&buf[..head_len]) {
            Ok(req) => req,
            Err((status, body)) => {
                let _ = respond(stream, status, body, true).await;
                return None;
            }
        };
        let body_end = head_len + req.content_length;
        while buf.len() < body_end {
            if !read_more(stream, &mut buf).await {
                return None;
            }
        }
        let (status, reply) = match route(state, &req, &buf[head_len..body_end]) {
            Routed::Reply(status, reply) => (status, reply),
            Routed::Upgrade { group, key } => {
                let rest = buf.split_off(body_end);
                return Some(Upgrade { group, key, rest });
            }
        };
        if !respond(stream, status, &reply, req.close).await || req.close {
            return None;
        }
        buf.drain(..body_end);
    }
}

/// Reads until `buf` holds a complete request head; returns its length, or `None` when
/// the connection ended or the head is too large.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(pos) = memmem::find(buf, b"\r\n\r\n") {
            return Some(pos + 4);
        }
        if buf.len() > MAX_HEAD || !read_more(stream, buf).await {
            return None;
        }
    }
}

/// What the server needs of a request head.
struct Request {
    method: String,
    path: String,
    /// `Connection: close`.
    close: bool,
    content_length: usize,
    /// `Upgrade: websocket`, and the client's `Sec-WebSocket-Key`.
    upgrade: bool,
    ws_key: Option<String>,
}

impl Request {
    /// Parses a complete head, or gives the status and body that refuse it (the
    /// connection closes after those).
    fn parse(head: &[u8]) -> Result<Self, (u16, &'static str)> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            return Err((
                400,
                r#"{"error":"invalid_request","message":"bad request"}"#,
            ));
        }
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let content_length = match header("content-length") {
            None => Some(0),
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        };
        let Some(content_length) = content_length else {
            return Err((
                400,
                r#"{"error":"invalid_request","message":"bad Content-Length"}"#,
            ));
        };
        if header("transfer-encoding").is_some() {
            return Err((
                400,
                r#"{"error":"invalid_request","message":"chunked bodies are not supported"}"#,
            ));
        }
        if content_length > MAX_BODY {
            return Err((
                413,
                r#"{"error":"payload_too_large","message":"body too large"}"#,
            ));
        }
        Ok(Self {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("").to_string(),
            close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close")),
            content_length,
            upgrade: header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")),
            ws_key: header("sec-websocket-key").map(|v| String::from_utf8_lossy(v).into_owned()),
        })
    }
}

/// What a request gets: a JSON reply, or the WebSocket.
enum Routed {
    Reply(u16, std::borrow::Cow<'static, str>),
    Upgrade { group: String, key: String },
}

/// The URL table.
fn route(state: &State, req: &Request, body: &[u8]) -> Routed {
    let reply = |status, body: &'static str| Routed::Reply(status, body.into());
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/healthz") => reply(200, r#"{"status":"ok"}"#),
        ("POST", "/notify") => {
            let (status, body) = notify(state, body);
            Routed::Reply(status, body.into())
        }
        ("GET", p) if p.starts_with("/ws/") => {
            let group = &p[4..];
            match &req.ws_key {
                _ if !valid_name(group) => reply(
                    400,
                    r#"{"error":"invalid_group","message":"bad group name"}"#,
                ),
                Some(key) if req.upgrade => Routed::Upgrade {
                    group: group.to_string(),
                    key: key.clone(),
                },
                _ => reply(
                    426,
                    r#"{"error":"upgrade_required","message":"WebSocket upgrade required"}"#,
                ),
            }
        }
        _ => reply(404, r#"{"error":"not_found","message":"no such route"}"#),
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.reserve(2048);
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

/// Writes a JSON response; returns whether the connection is still usable.
async fn respond(stream: &mut TcpStream, status: u16, body: &str, close: bool) -> bool {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        _ => "Other",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    stream.write_all(response.as_bytes()).await.is_ok()
}
