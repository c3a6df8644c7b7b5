//! Slow consumers and heartbeats: one bad client never costs the others anything.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::protocol::CloseCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn slow_consumer_is_closed_while_fast_one_gets_everything() {
    let app = spawn_app_with(|c| {
        c.send_queue = 16;
        // Long enough for the slow client below to start reading before its close frame
        // is given up on.
        c.write_timeout = Duration::from_secs(30);
    })
    .await;
    let mut slow = app.ws("/ws/feed").await; // connected, but never reads until the end
    let mut fast = app.ws("/ws/feed").await;
    let fast_reader = tokio::spawn(async move {
        let mut offsets = Vec::new();
        loop {
            let frame = fast.recv_json().await;
            let offset = frame["offset"].as_u64().unwrap();
            offsets.push(offset);
            if frame["data"]["last"] == true {
                return offsets;
            }
        }
    });

    // 16 KiB payloads fill the slow client's socket buffers within a few hundred notifies.
    let filler = "x".repeat(16 * 1024);
    let mut sent = 0u64;
    let mut slowest = Duration::ZERO;
    while app.group("feed").await["subscribers"] == 2 {
        assert!(sent < 3000, "the slow consumer was never closed");
        for _ in 0..10 {
            let started = Instant::now();
            app.notify_ok("feed", "tick", json!({"filler": filler, "last": false}))
                .await;
            slowest = slowest.max(started.elapsed());
            sent += 1;
        }
    }
    let last = app.notify_ok("feed", "tick", json!({"last": true})).await;
    sent += 1;
    assert_eq!(last["recipients"], 1, "only the fast client is left");

    // POST /notify never waited for the slow client: no request took anywhere near the
    // time a blocked write would (generous bound, this is not a benchmark).
    assert!(
        slowest < Duration::from_secs(2),
        "slowest notify took {slowest:?}"
    );
    let offsets = fast_reader.await.unwrap();
    assert_eq!(
        offsets,
        (1..=sent).collect::<Vec<_>>(),
        "the fast client got every notification in order"
    );

    let (frames, code, reason) = slow.read_until_close().await;
    assert_eq!(code, CloseCode::SLOW_CONSUMER.code);
    assert_eq!(reason, "slow_consumer");
    let got: Vec<u64> = frames
        .iter()
        .map(|f| f["offset"].as_u64().unwrap())
        .collect();
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "what the slow client did get has no gaps"
    );
    assert!(
        (got.len() as u64) < sent,
        "the slow client cannot have received everything"
    );
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_with_the_heartbeat_code() {
    let app = spawn_app_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(200);
    })
    .await;
    // Not polling the socket means tungstenite never answers the server's pings. The
    // server leaves the connection's groups as it decides to close it, so the group
    // emptying (seen over HTTP, without reading the socket) is that decision.
    let mut silent = app.ws("/ws/hb").await;
    app.wait_for_subscribers("hb", 0).await;
    let (code, reason) = silent.expect_close().await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::HEARTBEAT_TIMEOUT.code, "heartbeat_timeout")
    );
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_connected() {
    let app = spawn_app_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.ping_timeout = Duration::from_millis(200);
    })
    .await;
    let mut alive = app.ws("/ws/hb").await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(900);
    // Reading lets tungstenite answer each ping with a pong.
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, alive.0.next()).await {
        assert!(matches!(msg, Message::Ping(_)), "unexpected {msg:?}");
        pings += 1;
    }
    assert!(pings >= 2, "herald pings an idle connection (saw {pings})");
    app.notify_ok("hb", "e", json!(1)).await;
    assert_eq!(alive.recv_json().await["offset"], 1);
}

// Several workers, as in production: the publishing task writes on one thread while the
// session reads and answers on another. (The exact byte order around a partly written
// frame is checked deterministically in `hub::member`'s socket tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_and_replies_stay_whole_between_partly_written_notifications() {
    let app = spawn_app_with(|c| {
        c.send_queue = 4096;
        c.write_timeout = Duration::from_secs(30);
        c.max_body = 1 << 20;
    })
    .await;
    // The client reads nothing until the end, so the socket pushes back and notifications
    // are written in parts; its pings make herald write pongs (and its subscribe a reply)
    // through the same output, which must land between whole frames.
    let mut ws = app.ws("/ws/feed").await;
    // More than the socket buffers hold (up to 32 MiB for the client's receive buffer
    // with Linux's default tcp_rmem), so herald's writes cannot all complete.
    let filler = "x".repeat(512 * 1024);
    let mut sent = 0u64;
    for round in 0..40u32 {
        for _ in 0..3 {
            app.notify_ok("feed", "tick", json!({"filler": filler}))
                .await;
            sent += 1;
        }
        let ping = Message::Ping(round.to_be_bytes().to_vec().into());
        ws.0.send(ping).await.unwrap();
    }
    ws.send_json(json!({"type": "subscribe", "group": "other"}))
        .await;

    let (mut offsets, mut pongs, mut subscribed) = (Vec::new(), Vec::new(), false);
    while (offsets.len() as u64) < sent || pongs.len() < 40 || !subscribed {
        let msg = tokio::time::timeout(crate::helpers::WAIT, ws.0.next())
            .await
            .expect("timed out")
            .expect("connection ended")
            .expect("a frame that does not parse: bytes interleaved");
        match msg {
            Message::Text(t) => {
                let frame: serde_json::Value = serde_json::from_str(&t).unwrap();
                match frame["type"].as_str() {
                    Some("notify") => {
                        assert_eq!(frame["data"]["filler"], filler.as_str());
                        offsets.push(frame["offset"].as_u64().unwrap());
                    }
                    Some("subscribed") => subscribed = true,
                    _ => panic!("unexpected {frame}"),
                }
            }
            Message::Pong(p) => pongs.push(u32::from_be_bytes(p[..].try_into().unwrap())),
            Message::Ping(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offsets, (1..=sent).collect::<Vec<_>>());
    assert_eq!(pongs, (0..40).collect::<Vec<_>>());
}
