//! A minimal HTTP/1.1 keep-alive client: enough for `POST /notify` at tens of thousands
//! of requests per second from one core. One request in flight per connection; the
//! request is written with one `write_all`; the response head is parsed with httparse
//! and the body read by `Content-Length` (chunked replies are refused).

use std::io;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::target::Target;

/// Largest response (head + body) accepted.
const MAX_RESPONSE: usize = 1024 * 1024;

pub struct HttpConn {
    stream: TcpStream,
    host: String,
    req: Vec<u8>,
    buf: Vec<u8>,
    /// `buf[..end]` holds bytes read and not yet consumed.
    end: usize,
    /// The server asked to close after the last response.
    closing: bool,
}

/// Status and body of one response; the body borrows the connection's buffer.
pub struct Reply<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

impl HttpConn {
    pub async fn connect(target: &Target) -> io::Result<Self> {
        let stream = timeout(Duration::from_secs(10), TcpStream::connect(target.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: target.host.clone(),
            req: Vec::with_capacity(1024),
            buf: vec![0; 4096],
            end: 0,
            closing: false,
        })
    }

    /// Whether the server announced `Connection: close`; the caller should reconnect.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Sends `POST path` with a JSON body and waits for the whole response.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<Reply<'_>> {
        self.req.clear();
        self.req.extend_from_slice(b"POST ");
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.req.extend_from_slice(self.host.as_bytes());
        self.req
            .extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
        self.req
            .extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        self.req.extend_from_slice(b"\r\n\r\n");
        self.req.extend_from_slice(body);
        self.stream.write_all(&self.req).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Reply<'_>> {
        // Read until the head is complete.
        let head_len = loop {
            if let Some(pos) = memmem::find(&self.buf[..self.end], b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let mut headers = [httparse::EMPTY_HEADER; 24];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(invalid("unparsable response head")),
        }
        let status = response.code.unwrap_or(0);
        let mut content_length = 0usize;
        let mut closing = false;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| invalid("bad Content-Length"))?;
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(invalid("chunked responses are not supported"));
            } else if h.name.eq_ignore_ascii_case("connection")
                && h.value.eq_ignore_ascii_case(b"close")
            {
                closing = true;
            }
        }
        let total = head_len + content_length;
        if total > MAX_RESPONSE {
            return Err(invalid("response too large"));
        }
        while self.end < total {
            self.fill().await?;
        }
        self.closing = closing;
        // One request is in flight at a time, so nothing may follow the response.
        if self.end > total {
            return Err(invalid("unexpected bytes after the response"));
        }
        let body_range = head_len..total;
        self.end = 0;
        Ok(Reply {
            status,
            body: &self.buf[body_range],
        })
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RESPONSE {
                return Err(invalid("response too large"));
            }
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The sum of every number that follows `key` in `json` (e.g. each item's `recipients`
/// in a `POST /notify/batch` reply).
pub fn sum_u64(json: &[u8], key: &[u8]) -> u64 {
    memmem::find_iter(json, key)
        .filter_map(|at| parse_u64(&json[at + key.len()..]))
        .map(|(v, _)| v)
        .sum()
}

/// Leading decimal digits of `s` (after optional spaces) and how many bytes they took.
pub fn parse_u64(s: &[u8]) -> Option<(u64, usize)> {
    let skip = s.iter().take_while(|b| **b == b' ').count();
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in &s[skip..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some((v, skip + n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_number_after_a_key() {
        let reply = br#"{"results":[{"id":"a","offset":1,"recipients":3},{"id":"b","offset":2,"recipients": 4}]}"#;
        assert_eq!(sum_u64(reply, b"\"recipients\":"), 7);
        assert_eq!(sum_u64(b"{}", b"\"recipients\":"), 0);
    }

    #[test]
    fn scans_numbers() {
        let body = br#"{"id":"x","offset":17,"recipients": 42}"#;
        assert_eq!(sum_u64(body, b"\"offset\":"), 17);
        assert_eq!(sum_u64(body, b"\"recipients\":"), 42);
        assert_eq!(sum_u64(body, b"\"missing\":"), 0);
        assert_eq!(parse_u64(b"123,"), Some((123, 3)));
        assert_eq!(parse_u64(b"x"), None);
    }
}
