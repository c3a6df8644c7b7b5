//! SIGTERM on the real binary: every client gets 1012 and the process exits 0 in time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::poll_until;

/// Starts the herald binary on a free port and returns it with the address it logged.
fn start_herald(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start herald");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("herald exited before listening")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["fields"]["message"] == "listening" {
            break v["fields"]["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn sigterm(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let exited = poll_until(limit, || {
        let status = child.try_wait().unwrap();
        std::future::ready(status.ok_or_else(|| "still running".to_owned()))
    })
    .await;
    exited.unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("herald did not exit within {limit:?}");
    })
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1012_and_exits_zero() {
    let (mut child, addr) = start_herald(&["--drain-timeout", "5s"]);
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
    sigterm(&child);
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
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "clients that answer the close let herald exit before the drain timeout"
    );
}

#[tokio::test]
async fn a_client_that_never_answers_does_not_hold_shutdown_past_the_drain_timeout() {
    let (mut child, addr) = start_herald(&["--drain-timeout", "1s"]);
    // Connected but never polled: it will not answer the close frame.
    let (_stuck, _) = connect_async(format!("ws://{addr}/ws/a")).await.unwrap();
    let started = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
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
