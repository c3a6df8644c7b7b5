//! Client frames near `--max-frame` (default 64 KiB) are read whole and in order, also
//! back to back in one burst; one byte over still closes with 1009.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app_with, TestApp, Ws};

/// Default `--max-frame`.
const MAX_FRAME: usize = 64 * 1024;

/// A `publish` frame to `g` of exactly `len` bytes whose data is a string of letters
/// starting at `seed`, so a lost, repeated or misplaced byte changes it.
fn publish_frame(len: usize, seed: u8) -> (String, String) {
    let (head, tail) = (r#"{"type":"publish","group":"g","data":""#, r#""}"#);
    let data: String = (0..len - head.len() - tail.len())
        .map(|i| char::from(b'a' + ((i + usize::from(seed)) % 26) as u8))
        .collect();
    let frame = format!("{head}{data}{tail}");
    assert_eq!(frame.len(), len);
    (frame, data)
}

/// Two members of `g` on a hub that lets clients publish: (sender, receiver).
async fn publisher_and_receiver() -> (TestApp, Ws, Ws) {
    let app = spawn_app_with(|c| c.client_publish = true).await;
    let sender = app.ws("/ws/g").await;
    let receiver = app.ws("/ws/g").await;
    app.wait_for_subscribers("g", 2).await;
    (app, sender, receiver)
}

#[tokio::test]
async fn frames_up_to_max_frame_sent_back_to_back_are_each_read_whole_and_in_order() {
    let (_app, mut sender, mut receiver) = publisher_and_receiver().await;
    let sizes = [MAX_FRAME, MAX_FRAME - 1, 40_000, MAX_FRAME];
    let frames: Vec<(String, String)> = sizes
        .iter()
        .zip(0u8..)
        .map(|(len, seed)| publish_frame(*len, seed))
        .collect();

    // One burst: the frames (and a ping after them) reach the hub's socket together.
    for (frame, _) in &frames {
        sender.0.feed(Message::text(frame.clone())).await.unwrap();
    }
    sender
        .0
        .feed(Message::text(json!({"type": "ping"}).to_string()))
        .await
        .unwrap();
    sender.0.flush().await.unwrap();

    for (i, (_, data)) in frames.iter().enumerate() {
        let note = receiver.recv_json().await;
        assert_eq!(note["type"], "notify", "frame {i}");
        assert_eq!(note["offset"], i as u64 + 1, "frame {i}");
        assert!(note["data"] == data.as_str(), "frame {i}: data differs");
    }
    // The sender is in `g` too: its own notifications, then the ping's answer.
    for (i, (_, data)) in frames.iter().enumerate() {
        let note = sender.recv_json().await;
        assert!(note["data"] == data.as_str(), "frame {i} to the sender");
    }
    assert_eq!(sender.recv_json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn a_frame_one_byte_over_max_frame_after_a_full_one_closes_with_1009() {
    let (app, mut sender, mut receiver) = publisher_and_receiver().await;
    let (full, data) = publish_frame(MAX_FRAME, 0);
    let (over, _) = publish_frame(MAX_FRAME + 1, 1);

    sender.0.feed(Message::text(full)).await.unwrap();
    sender.0.feed(Message::text(over)).await.unwrap();
    sender.0.flush().await.unwrap();

    let (frames, code, reason) = sender.read_until_close().await;
    assert_eq!((code, reason.as_str()), (1009, "frame_too_large"));
    assert!(
        frames.len() <= 1,
        "{} frames before the close",
        frames.len()
    );
    let note = receiver.recv_json().await;
    assert!(
        note["data"] == data.as_str(),
        "the full frame was published whole"
    );
    app.wait_for_subscribers("g", 1).await;
}
