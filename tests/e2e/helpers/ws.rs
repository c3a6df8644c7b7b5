//! The test WebSocket client.

use std::ops::RangeInclusive;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

/// A test WebSocket client.
pub struct Ws(pub WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Ws {
    pub async fn send_json(&mut self, v: Value) {
        self.0.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next text frame as JSON; control frames are skipped.
    pub async fn recv_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads one notify frame per offset in `offsets`, asserting each is a notify with
    /// the next offset, in order; returns the frames.
    pub async fn expect_offsets(&mut self, offsets: RangeInclusive<u64>) -> Vec<Value> {
        let mut frames = Vec::new();
        for want in offsets {
            let frame = self.recv_json().await;
            assert_eq!(frame["type"], "notify", "{frame}");
            assert_eq!(frame["offset"], want, "{frame}");
            frames.push(frame);
        }
        frames
    }

    /// Subscribes on `/ws` and returns the `subscribed` reply.
    pub async fn subscribe(&mut self, group: &str) -> Value {
        self.send_json(json!({"type": "subscribe", "group": group}))
            .await;
        let reply = self.recv_json().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        assert_eq!(reply["group"], group);
        reply
    }

    /// Reads until the close frame and returns its code and reason; text frames before
    /// it are returned too, in order.
    pub async fn read_until_close(&mut self) -> (Vec<Value>, u16, String) {
        let mut frames = Vec::new();
        loop {
            let msg = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(Some(f)))) => {
                    return (frames, u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Expects a close frame next (after any text frames, which are discarded).
    pub async fn expect_close(&mut self) -> (u16, String) {
        let (_, code, reason) = self.read_until_close().await;
        (code, reason)
    }

    /// Asserts no text frame arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.0.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}
