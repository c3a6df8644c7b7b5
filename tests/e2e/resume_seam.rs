//! The seam between replay and live delivery under load: notifications are published
//! continuously (several per millisecond) while 50 clients resume, in several rounds;
//! every client sees every offset after its `since` exactly once, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{spawn_app_with, TestApp, Ws, WAIT};

/// Concurrent publishers, notifications per round, rounds, resuming clients per round.
const PUBLISHERS: u64 = 4;
const PER_ROUND: u64 = 600;
const ROUNDS: u64 = 3;
const CLIENTS: u64 = 50;

/// Publishes `PER_ROUND` notifications to `group` from `PUBLISHERS` tasks at once.
async fn publish_round(app: &TestApp, group: &str, published: &Arc<AtomicU64>) {
    let mut tasks = JoinSet::new();
    for _ in 0..PUBLISHERS {
        let (http, url, group) = (app.http.clone(), app.url("/notify"), group.to_owned());
        let published = published.clone();
        tasks.spawn(async move {
            for _ in 0..PER_ROUND / PUBLISHERS {
                let res = http
                    .post(&url)
                    .json(&json!({"group": group, "data": "x"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
                published.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// Resumes `group` from `since` and reads through offset `until`, asserting each offset
/// after `since` arrives exactly once, in order.
async fn resume_and_read(app: &TestApp, group: &str, since: u64, epoch: &str, until: u64) {
    let mut ws: Ws = app
        .ws(&format!("/ws/{group}?since={since}&epoch={epoch}"))
        .await;
    let subscribed = ws.recv_json().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["recovered"], true, "since {since}: {subscribed}");
    ws.expect_offsets(since + 1..=until).await;
}

#[tokio::test]
async fn every_offset_after_since_arrives_once_in_order_while_publishing_continues() {
    // History deep enough for every resume below; queues deep enough for the replay.
    let app = spawn_app_with(|c| c.history_size = 1_000).await;
    let app = Arc::new(app);
    let group = "seam";
    // The first notification fixes the epoch.
    let first = app.notify_ok(group, "e", json!("start")).await;
    assert_eq!(first["offset"], 1);
    let history = app.get_json("/groups/seam/history?limit=1").await;
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    let published = Arc::new(AtomicU64::new(1));

    let test = async {
        for round in 1..=ROUNDS {
            let until = 1 + round * PER_ROUND;
            let publisher = {
                let (app, published) = (app.clone(), published.clone());
                tokio::spawn(async move { publish_round(&app, group, &published).await })
            };
            let mut clients = JoinSet::new();
            for i in 0..CLIENTS {
                // Spread the resumes over the round, each from a little before "now".
                tokio::time::sleep(Duration::from_millis(2)).await;
                let now = published.load(Ordering::Relaxed);
                let since = now.saturating_sub(i * 7 % 60).max(1);
                let (app, epoch) = (app.clone(), epoch.clone());
                clients
                    .spawn(async move { resume_and_read(&app, group, since, &epoch, until).await });
            }
            publisher.await.unwrap();
            while let Some(done) = clients.join_next().await {
                done.unwrap();
            }
        }
    };
    // Bounded: the whole test, not only each frame, has a deadline.
    tokio::time::timeout(WAIT * 6, test)
        .await
        .expect("the seam test took too long");
}
