//! reference-server: the yardstick herald is benchmarked against.
//!
//! A minimal fan-out server with herald's URL contract for what herald-bench uses:
//! `GET /ws/{group}` (upgrade; a member of `{group}` from the moment the 101 is sent),
//! `POST /notify` `{"group","event","data"}` -> 202 `{"id","offset","recipients"}` with a
//! per-group offset, and `GET /healthz`. Each member gets
//! `{"type":"notify","group":..,"event":..,"offset":N,"data":..}`.
//!
//! What makes it lean, and what a fast hub on tokio + tokio-tungstenite can be expected
//! to do at least as well:
//! - one task per connection, a bounded mpsc queue per connection (`try_send`, a full
//!   queue drops the member and closes it with 4100);
//! - each notify is serialised once into a `Message` whose clone is a refcount bump;
//! - batched writes: drain the queue with `feed`, then one `flush`;
//! - small tungstenite buffers (2 KiB read, 8 KiB write);
//! - HTTP/1.1 keep-alive parsed by hand with httparse.
//!
//! It deliberately has none of herald's other features (frames from clients, limits,
//! heartbeats, graceful shutdown, close API, brokers).

#![forbid(unsafe_code)]

mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Most queued frames fed per wake-up before one flush.
const BATCH: usize = 256;

#[derive(Parser, Debug)]
#[command(
    name = "reference-server",
    about = "Minimal WebSocket fan-out server (benchmark yardstick)"
)]
struct Args {
    /// Address to listen on (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Per-connection outbound queue, in messages; overflow closes with 4100.
    #[arg(long, default_value_t = 1024)]
    send_queue: usize,
}

#[derive(Default)]
struct Group {
    offset: u64,
    members: HashMap<u64, mpsc::Sender<Message>>,
}

struct State {
    groups: Mutex<HashMap<String, Group>>,
    next_conn: AtomicU64,
    next_notify: AtomicU64,
    send_queue: usize,
}

impl State {
    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self, group: &str, id: u64) {
        if let Some(g) = self.groups().get_mut(group) {
            g.members.remove(&id);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyBody<'a> {
    group: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Group and event names: 1-100 of `A-Z a-z 0-9 _ - . :` (herald's rule), which also
/// means they need no JSON escaping.
fn valid_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let socket = if args.listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(4096)?;
    println!("reference-server listening addr={}", listener.local_addr()?);
    let state = Arc::new(State {
        groups: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        next_notify: AtomicU64::new(1),
        send_queue: args.send_queue.max(1),
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, state.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection: HTTP requests until it closes or upgrades, then the WebSocket. The
/// HTTP buffers are gone before the WebSocket starts, so idle members stay small.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    if let Some(up) = http::serve(&mut stream, &state).await {
        websocket(stream, state, up).await;
    }
}

/// Handles `POST /notify`: one serialisation, then a refcounted clone per member.
fn notify(state: &State, body: &[u8]) -> (u16, String) {
    let parsed: NotifyBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            let msg = serde_json::to_string(&e.to_string()).unwrap_or_default();
            return (
                400,
                format!(r#"{{"error":"invalid_json","message":{msg}}}"#),
            );
        }
    };
    let event = parsed.event.as_deref().unwrap_or("message");
    if !valid_name(&parsed.group) {
        return (
            400,
            r#"{"error":"invalid_group","message":"bad group name"}"#.into(),
        );
    }
    if !valid_name(event) {
        return (
            400,
            r#"{"error":"invalid_event","message":"bad event name"}"#.into(),
        );
    }
    let id = state.next_notify.fetch_add(1, Relaxed);
    let mut groups = state.groups();
    let group = groups.entry(parsed.group.clone()).or_default();
    group.offset += 1;
    let offset = group.offset;
    let frame = format!(
        r#"{{"type":"notify","group":"{}","event":"{event}","offset":{offset},"data":{}}}"#,
        parsed.group,
        parsed.data.get()
    );
    let msg = Message::Text(Utf8Bytes::from(frame));
    let mut recipients = 0u64;
    group
        .members
        .retain(|_, tx| match tx.try_send(msg.clone()) {
            Ok(()) => {
                recipients += 1;
                true
            }
            // Full: a slow consumer; dropping its sender makes its task close it with 4100.
            Err(_) => false,
        });
    drop(groups);
    (
        202,
        format!(r#"{{"id":"{id:016x}","offset":{offset},"recipients":{recipients}}}"#),
    )
}

/// Completes the upgrade and serves the WebSocket until it closes.
async fn websocket(mut stream: TcpStream, state: Arc<State>, up: http::Upgrade) {
    let http::Upgrade { group, key, rest } = up;
    let id = state.next_conn.fetch_add(1, Relaxed);
    let (tx, mut rx) = mpsc::channel::<Message>(state.send_queue);
    // A member before the 101 goes out, so a client that saw the 101 gets every later notify.
    state
        .groups()
        .entry(group.clone())
        .or_default()
        .members
        .insert(id, tx);
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        state.leave(&group, id);
        return;
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    let mut ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;
    let mut batch = Vec::new();
    let mut slow = false;
    'conn: loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    slow = true;
                    break;
                }
                for msg in batch.drain(..) {
                    if ws.feed(msg).await.is_err() {
                        break 'conn;
                    }
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                // tungstenite answers pings and echoes the close on the next flush.
                Some(Ok(Message::Close(_))) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
                    break;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
        }
    }
    state.leave(&group, id);
    if slow {
        let frame = CloseFrame {
            code: CloseCode::Library(4100),
            reason: "slow_consumer".into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
    }
}
