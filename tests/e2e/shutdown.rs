//! SIGTERM on the real binary: every client gets 1012 and the process exits 0 in time.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::process::Herald;

#[tokio::test]
async fn sigterm_closes_every_client_with_1012_and_exits_zero() {
    let mut herald = Herald::start(&["--drain-timeout", "5s"], &[]);
    let addr = herald.addr.clone();
    let mut clients = Vec::new();
    for path in ["/ws/a", "/ws/a", "/ws"] {
        let (ws, _) = connect_async(format!("ws://{addr}{path}")).await.unwrap();
        clients.push(ws);
    }
    let res = reqwest::Client::new()
        .post(format!("http://{addr}/notify"))
        .json(&json!({"group": "a", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);

    let started = Instant::now();
    herald.signal("TERM");
    for ws in &mut clients {
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(code, 1012, "service restart: reconnect elsewhere");
    }
    let status = herald.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "clients that answer the close let herald exit before the drain timeout"
    );
}

#[tokio::test]
async fn a_client_that_never_answers_does_not_hold_shutdown_past_the_drain_timeout() {
    let mut herald = Herald::start(&["--drain-timeout", "1s"], &[]);
    let addr = herald.addr.clone();
    // Connected but never polled: it will not answer the close frame.
    let (_stuck, _) = connect_async(format!("ws://{addr}/ws/a")).await.unwrap();
    let started = Instant::now();
    herald.signal("TERM");
    let status = herald.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "herald waited for the drain ({took:?})"
    );
    assert!(
        took < Duration::from_secs(4),
        "herald exited soon after the 1s drain timeout ({took:?})"
    );
}

#[tokio::test]
async fn on_shutdown_notifications_already_sent_arrive_before_1012() {
    let app = crate::helpers::spawn_app().await;
    let mut ws = app.ws("/ws/g").await;
    for seq in 1..=3 {
        app.notify_ok("g", "e", json!(seq)).await;
    }
    app.shutdown().await;
    let (frames, code, reason) = ws.read_until_close().await;
    let offsets: Vec<_> = frames
        .iter()
        .map(|f| f["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![1, 2, 3]);
    assert_eq!((code, reason.as_str()), (1012, "service_restart"));
}
