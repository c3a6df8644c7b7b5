//! Plain-HTTP connection hygiene: slow or silent clients are cut off by deadlines, a
//! connection flood cannot starve real requests, replies that leave a body unread say
//! `Connection: close`, and the backend API can live on its own listener.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, spawn_app_with, WAIT};

/// A raw TCP client, for requests no HTTP library would send.
struct Raw(TcpStream);

/// One HTTP/1.1 response as read off the socket.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Self {
        Self(TcpStream::connect(addr).await.expect("connect"))
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("send");
    }

    /// Whether herald closes the connection within `limit` (anything it sends first is
    /// discarded).
    async fn closed_within(&mut self, limit: Duration) -> bool {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.0.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Reads one response (a `content-length` body).
    async fn response(&mut self) -> RawResponse {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = tokio::time::timeout(WAIT, self.0.read(&mut buf))
                .await
                .expect("response in time")
                .expect("read");
            assert!(n > 0, "connection closed before a response: {data:?}");
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut res = RawResponse {
            status,
            head,
            body: data[head_end..].to_vec(),
        };
        let length: usize = res
            .header("content-length")
            .map_or(0, |l| l.parse().unwrap());
        while res.body.len() < length {
            let n = tokio::time::timeout(WAIT, self.0.read(&mut buf))
                .await
                .expect("body in time")
                .expect("read");
            assert!(n > 0, "connection closed inside a body");
            res.body.extend_from_slice(&buf[..n]);
        }
        res
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n";

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off_at_the_header_timeout() {
    let app = spawn_app_with(|c| c.http_header_timeout = Duration::from_millis(500)).await;
    let mut silent = Raw::connect(app.addr).await;
    let mut half = Raw::connect(app.addr).await;
    half.send(b"GET /healthz HTTP/1.1\r\nhost: her").await;

    assert!(
        silent.closed_within(WAIT).await,
        "a silent connection stayed open"
    );
    assert!(
        half.closed_within(WAIT).await,
        "a half-sent head stayed open"
    );
}

#[tokio::test]
async fn a_header_dribbled_byte_by_byte_does_not_extend_the_deadline() {
    let app = spawn_app_with(|c| c.http_header_timeout = Duration::from_millis(800)).await;
    let mut raw = Raw::connect(app.addr).await;
    let start = Instant::now();
    // One byte every 100 ms: each read is prompt, but the whole head would take ~4 s.
    let head = b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n";
    let mut cut_off_after = None;
    for byte in head {
        if raw.0.write_all(&[*byte]).await.is_err() {
            cut_off_after = Some(start.elapsed());
            break;
        }
        if raw.closed_within(Duration::from_millis(100)).await {
            cut_off_after = Some(start.elapsed());
            break;
        }
    }
    let after = cut_off_after.expect("the dribbled head was answered instead of cut off");
    assert!(
        after < Duration::from_secs(3),
        "cut off only after {after:?}"
    );
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let app = spawn_app_with(|c| c.http_body_timeout = Duration::from_millis(500)).await;
    let mut raw = Raw::connect(app.addr).await;
    raw.send(
        b"POST /notify HTTP/1.1\r\nhost: herald\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"group\":",
    )
    .await;

    let res = raw.response().await;
    assert_eq!(res.status, 408, "{res:?}");
    assert_eq!(res.json()["error"], "request_timeout");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(raw.closed_within(WAIT).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lives_past_the_header_timeout_and_closes_at_the_idle_timeout(
) {
    let app = spawn_app_with(|c| {
        c.http_header_timeout = Duration::from_millis(300);
        c.http_idle_timeout = Duration::from_millis(1500);
    })
    .await;
    let mut raw = Raw::connect(app.addr).await;
    raw.send(HEALTHZ).await;
    assert_eq!(raw.response().await.status, 200);

    // Idle for longer than the header timeout: still usable.
    tokio::time::sleep(Duration::from_millis(700)).await;
    raw.send(HEALTHZ).await;
    assert_eq!(raw.response().await.status, 200);

    // Then nothing: closed once the idle timeout passes.
    assert!(!raw.closed_within(Duration::from_millis(800)).await);
    assert!(
        raw.closed_within(WAIT).await,
        "the idle connection stayed open"
    );
}

#[tokio::test]
async fn a_request_head_larger_than_the_limit_is_refused_with_431() {
    let app = spawn_app_with(|c| c.max_header_bytes = 8192).await;
    let mut raw = Raw::connect(app.addr).await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nhost: herald\r\nx-filler: {}\r\n",
        "a".repeat(20_000)
    );
    // Never finished: herald must not buffer it all waiting for the end.
    let _ = raw.0.write_all(big.as_bytes()).await;

    let res = raw.response().await;
    assert_eq!(res.status, 431, "{res:?}");
    assert!(raw.closed_within(WAIT).await);
}

#[tokio::test]
async fn a_slowloris_flood_larger_than_the_cap_does_not_keep_real_requests_out() {
    let app = spawn_app_with(|c| c.max_http_connections = 16).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        let mut raw = Raw::connect(app.addr).await;
        raw.send(b"GET /healthz HTTP/1.1\r\nx-slow: ").await;
        flood.push(raw);
    }

    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.notify_ok("g", "e", json!(1)).await["recipients"], 0);
    let mut ws = app.ws("/ws/g").await;
    app.notify_ok("g", "e", json!(2)).await;
    assert_eq!(ws.recv_json().await["data"], 2);
    // The oldest flood connections were closed to make room.
    assert!(flood[0].closed_within(WAIT).await);
}

#[tokio::test]
async fn when_every_http_slot_is_busy_a_new_connection_gets_503_and_websockets_do_not_count() {
    let app = spawn_app_with(|c| {
        c.max_http_connections = 2;
        c.http_body_timeout = Duration::from_secs(30);
    })
    .await;
    // WebSockets hold no HTTP slot.
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(app.ws("/ws/g").await);
    }
    // Two requests in flight, waiting for bodies that never come: both slots busy.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut raw = Raw::connect(app.addr).await;
        raw.send(b"POST /notify HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n").await;
        busy.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut refused = Raw::connect(app.addr).await;
    let res = refused.response().await;
    assert_eq!(res.status, 503, "{res:?}");
    assert_eq!(res.json()["error"], "too_many_connections");
    assert_eq!(res.header("connection"), Some("close"));

    // A finished request frees its slot.
    drop(busy);
    let deadline = Instant::now() + WAIT;
    loop {
        match app.http.get(app.url("/healthz")).send().await {
            Ok(res) if res.status() == 200 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("healthz never answered 200 again: {other:?}"),
        }
    }
}

#[tokio::test]
async fn replies_sent_before_the_body_is_read_keep_a_pooled_client_working() {
    let app = spawn_app_with(|c| c.max_body = 1024).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let big = json!({"group": "g", "event": "e", "data": "x".repeat(4096)});
    for round in 0..20 {
        let res = client
            .post(app.url("/notify"))
            .json(&big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "round {round}");
        assert_eq!(res.headers()["connection"], "close");
        let res = client
            .post(app.url("/notify"))
            .body("{}")
            .header("content-type", "text/plain")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "round {round}");
        let res = client
            .post(app.url("/notify"))
            .json(&json!({"group": "g", "event": "e", "data": round}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "round {round}");
    }
}

#[tokio::test]
async fn a_fully_read_request_keeps_its_connection() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(app.addr).await;
    for _ in 0..3 {
        let body = r#"{"group":"g","event":"e","data":1}"#;
        raw.send(
            format!(
                "POST /notify HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        let res = raw.response().await;
        assert_eq!(res.status, 202);
        assert_eq!(res.header("connection"), None);
    }
}

#[tokio::test]
async fn http2_cleartext_is_not_served() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(app.addr).await;
    raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.0.read_to_end(&mut buf)).await;
    // An HTTP/2 server would answer with a SETTINGS frame; herald answers in HTTP/1.1
    // or just closes.
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 "),
        "unexpected answer to an h2c preface: {buf:?}"
    );
}

#[tokio::test]
async fn with_api_listen_the_backend_api_is_only_on_its_own_listener() {
    let app = spawn_app_with(|c| c.api_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let api = app.api_addr.expect("api listener");
    let notify = json!({"group": "g", "event": "e", "data": 1});

    let public = app
        .http
        .post(app.url("/notify"))
        .json(&notify)
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let public = app.http.get(app.url("/groups")).send().await.unwrap();
    assert_eq!(public.status(), 404);

    let mut ws = app.ws("/ws/g").await;
    let private = app
        .http
        .post(format!("http://{api}/notify"))
        .json(&notify)
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 202);
    assert_eq!(ws.recv_json().await["data"], 1);

    let no_ws = app
        .http
        .get(format!("http://{api}/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ws.status(), 404);
    for addr in [app.addr, api] {
        let health = app
            .http
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test]
async fn shutdown_closes_idle_http_connections_at_once() {
    let app = spawn_app_with(|c| c.drain_timeout = Duration::from_secs(30)).await;
    let mut idle = Raw::connect(app.addr).await;
    idle.send(HEALTHZ).await;
    assert_eq!(idle.response().await.status, 200);
    let mut silent = Raw::connect(app.addr).await;
    let mut half = Raw::connect(app.addr).await;
    half.send(b"GET /hea").await;

    let start = Instant::now();
    app.shutdown().await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for idle connections",
        start.elapsed()
    );
    for raw in [&mut idle, &mut silent, &mut half] {
        assert!(raw.closed_within(Duration::from_secs(1)).await);
    }
}
