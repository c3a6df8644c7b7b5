//! A minimal WebSocket client for the subscriber side.
//!
//! The handshake and the frame reader are written by hand: a subscriber only reads
//! unmasked server frames and answers pings, and at more than a million deliveries per
//! second on one core, skipping tungstenite's message assembly and UTF-8 validation is
//! what keeps the client from being the bottleneck. Text payloads are handed to a
//! callback as byte slices straight out of the read buffer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Frames larger than this are treated as a protocol error.
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Mask key for the few frames the client sends (pong, close). Any key is valid.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connect, write or read failed, or timed out.
    Io(io::Error),
    /// The server answered something other than `101`, e.g. `503 too_many_connections`.
    Status(u16),
    /// The reply was not a valid upgrade (bad accept key, garbage).
    Protocol(&'static str),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "io: {e}"),
            ConnectError::Status(s) => write!(f, "HTTP status {s}"),
            ConnectError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

/// What one `read_batch` call saw besides text frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived (possibly only part of a frame).
    Data,
    /// The server sent a close frame with this code (None: no code).
    Closed(Option<u16>),
    /// The socket reached EOF without a close frame.
    Eof,
}

/// One client connection after a successful upgrade.
pub struct WsClient {
    stream: TcpStream,
    /// Read buffer; `buf[start..end]` holds bytes not yet parsed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Payload of a fragmented text message being assembled.
    frag: Vec<u8>,
    in_frag: bool,
    /// Control frames to send after the current batch (pongs).
    pending_out: Vec<u8>,
}

impl WsClient {
    /// Connects to `addr`, upgrades `path` and returns the open connection.
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        path: &str,
        read_buffer: usize,
        limit: Duration,
    ) -> Result<Self, ConnectError> {
        match timeout(limit, Self::connect_inner(addr, host, path, read_buffer)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake timed out",
            ))),
        }
    }

    async fn connect_inner(
        addr: SocketAddr,
        host: &str,
        path: &str,
        read_buffer: usize,
    ) -> Result<Self, ConnectError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;

        let mut buf = vec![0u8; read_buffer.max(1024)];
        let mut end = 0;
        let head_len = loop {
            if end == buf.len() {
                return Err(ConnectError::Protocol("response head too large"));
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(ConnectError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            end += n;
            if let Some(pos) = memmem::find(&buf[..end], b"\r\n\r\n") {
                break pos + 4;
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf[..head_len]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(ConnectError::Protocol("unparsable response head")),
        }
        let status = response.code.unwrap_or(0);
        if status != 101 {
            return Err(ConnectError::Status(status));
        }
        let expected = derive_accept_key(key.as_bytes());
        let accept_ok = response.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == expected.as_bytes()
        });
        if !accept_ok {
            return Err(ConnectError::Protocol("bad Sec-WebSocket-Accept"));
        }
        Ok(Self {
            stream,
            buf,
            start: head_len,
            end,
            frag: Vec::new(),
            in_frag: false,
            pending_out: Vec::new(),
        })
    }

    /// Waits for bytes, then hands every complete text message in the buffer to
    /// `on_text(receive_time_ns, payload)`. Answers pings. Cancel-safe while waiting.
    pub async fn read_batch(
        &mut self,
        mut on_text: impl FnMut(u64, &[u8]),
    ) -> io::Result<ReadOutcome> {
        if self.end == self.buf.len() {
            self.compact();
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Ok(ReadOutcome::Eof);
        }
        self.end += n;
        let now = crate::latency::now_ns();
        let outcome = self.parse(now, &mut on_text)?;
        if !self.pending_out.is_empty() {
            let out = std::mem::take(&mut self.pending_out);
            self.stream.write_all(&out).await?;
        }
        Ok(outcome)
    }

    /// Parses every complete frame in `buf[start..end]`.
    fn parse(&mut self, now: u64, on_text: &mut impl FnMut(u64, &[u8])) -> io::Result<ReadOutcome> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < 2 {
                break;
            }
            let (b0, b1) = (avail[0], avail[1]);
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            if b1 & 0x80 != 0 {
                return Err(proto("server frame is masked"));
            }
            let (len, header) = match b1 & 0x7f {
                126 => {
                    if avail.len() < 4 {
                        break;
                    }
                    (u16::from_be_bytes([avail[2], avail[3]]) as usize, 4)
                }
                127 => {
                    if avail.len() < 10 {
                        break;
                    }
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&avail[2..10]);
                    let len = u64::from_be_bytes(b);
                    if len > MAX_FRAME as u64 {
                        return Err(proto("frame too large"));
                    }
                    (len as usize, 10)
                }
                l => (l as usize, 2),
            };
            let total = header + len;
            if total > MAX_FRAME {
                return Err(proto("frame too large"));
            }
            if avail.len() < total {
                if total > self.buf.len() {
                    // A frame bigger than the whole buffer: grow it (rare: big payloads).
                    self.compact();
                    let want = total.next_power_of_two();
                    if want > self.buf.len() {
                        self.buf.resize(want, 0);
                    }
                }
                break;
            }
            let payload_range = self.start + header..self.start + total;
            self.start += total;
            match opcode {
                0x1 if fin && !self.in_frag => on_text(now, &self.buf[payload_range]),
                0x1 => {
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[payload_range]);
                    self.in_frag = true;
                }
                0x0 if self.in_frag => {
                    self.frag.extend_from_slice(&self.buf[payload_range]);
                    if fin {
                        self.in_frag = false;
                        on_text(now, &self.frag);
                    }
                }
                0x8 => {
                    let p = &self.buf[payload_range];
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return Ok(ReadOutcome::Closed(code));
                }
                0x9 => {
                    let payload = self.buf[payload_range].to_vec();
                    push_masked(&mut self.pending_out, 0xA, &payload);
                }
                _ => {} // pong, binary, stray continuation: ignored
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(ReadOutcome::Data)
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
    }

    /// Sends a close frame (1000) and shuts the write side; best effort, bounded.
    pub async fn close(mut self) {
        let mut out = Vec::with_capacity(8);
        push_masked(&mut out, 0x8, &1000u16.to_be_bytes());
        let _ = timeout(Duration::from_secs(1), async {
            self.stream.write_all(&out).await?;
            self.stream.shutdown().await
        })
        .await;
    }
}

fn proto(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Appends a masked client frame (payload < 126 bytes: control frames only).
fn push_masked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len().min(125);
    out.push(0x80 | opcode);
    out.push(0x80 | len as u8);
    out.extend_from_slice(&MASK);
    out.extend(
        payload[..len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i % 4]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_control_frames() {
        let mut out = Vec::new();
        push_masked(&mut out, 0x8, &1000u16.to_be_bytes());
        assert_eq!(out[0], 0x88);
        assert_eq!(out[1], 0x82);
        assert_eq!(out[6] ^ MASK[0], 0x03);
        assert_eq!(out[7] ^ MASK[1], 0xe8);
    }
}
