//! A raw HTTP/1.1 client for what reqwest will not send (a chunked body of a chosen
//! size, no Content-Length), over a plain `TcpStream`.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// POSTs `body` as `application/json` with `Transfer-Encoding: chunked` (no
/// Content-Length) over a raw socket; returns the status and the JSON reply body.
pub async fn post_chunked(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(4096) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // The server may answer and hang up before it read everything; a failed write
    // after that is expected, so the writer runs on its own and its errors are ignored.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(WAIT, read.read(&mut buf))
            .await
            .expect("timed out waiting for the response");
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
        if let Some(parsed) = parse_response(&response) {
            drop(writer);
            return parsed;
        }
    }
    parse_response(&response).unwrap_or_else(|| {
        panic!(
            "incomplete response: {:?}",
            String::from_utf8_lossy(&response)
        )
    })
}

/// Parses a complete HTTP/1.1 response with a Content-Length body, or `None` if more
/// bytes are needed.
fn parse_response(raw: &[u8]) -> Option<(u16, Value)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).expect("response head is text");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("response has a Content-Length");
    let body = raw.get(end + 4..end + 4 + length)?;
    Some((status, serde_json::from_slice(body).expect("JSON body")))
}
