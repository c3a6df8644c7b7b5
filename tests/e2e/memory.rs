//! Memory that must come back: group state exists only while it is needed.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::process::Herald;

/// Frames sent before reading their replies: enough to keep the socket busy.
const BATCH: usize = 500;

/// Subscribes to and unsubscribes from `count` distinct groups named `<prefix><i>`, with
/// `BATCH` cycles in flight, and checks every reply.
async fn churn(url: &str, prefix: &str, count: usize) {
    let (mut ws, _) = connect_async(url).await.unwrap();
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH).min(count);
        for i in start..end {
            let group = format!("{prefix}{i}");
            ws.feed(Message::text(
                json!({"type":"subscribe","group":group}).to_string(),
            ))
            .await
            .unwrap();
            ws.feed(Message::text(
                json!({"type":"unsubscribe","group":group}).to_string(),
            ))
            .await
            .unwrap();
        }
        ws.flush().await.unwrap();
        for i in start..end {
            for expected in ["subscribed", "unsubscribed"] {
                let msg = ws.next().await.unwrap().unwrap();
                let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
                assert_eq!(v["type"], expected, "{v}");
                assert_eq!(v["group"], format!("{prefix}{i}"));
            }
        }
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn distinct_subscribe_unsubscribe_cycles_leave_rss_where_it_started() {
    let herald = Herald::start(&[], &[]);
    let url = herald.ws_url("/ws");
    // Warm up allocator arenas and buffers first, so the measurement sees only what
    // group names leave behind.
    churn(&url, "warmup:", 10_000).await;
    let before = herald.rss_kib();
    churn(&url, "churn:", 100_000).await;
    let after = herald.rss_kib();
    // Before groups were forgotten, each name kept ~150 bytes: +15 MB for 100k names.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 4 * 1024,
        "RSS grew by {grown} KiB over 100k distinct groups ({before} -> {after} KiB)"
    );
    let groups: Value = reqwest::get(herald.url("/groups"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        groups["total"], 0,
        "no group is listed once its members left"
    );
}
