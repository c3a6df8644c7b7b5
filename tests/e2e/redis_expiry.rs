//! A group's Redis state (offset, epoch, history) expires, or is flushed, while nodes
//! keep watching it: the next notification starts a new epoch at offset 1, and every
//! watching node re-bases on it and delivers it, with no reconnect and no duplicate.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{series_value, two_nodes, TestApp, Ws};
use crate::redis_server::{cli, RedisServer};

const KEYS: [&str; 3] = [
    "herald:{room}:offset",
    "herald:{room}:epoch",
    "herald:{room}:history",
];

/// Notifies `room` through `app` and asserts it was accepted with `offset`.
async fn notify_at(app: &TestApp, offset: u64) {
    let reply = app.notify_ok("room", "e", json!(offset)).await;
    assert_eq!(reply["offset"], offset, "{reply}");
}

/// Reads the notify frames `offsets`, all in one epoch, and returns that epoch.
async fn epoch_of(ws: &mut Ws, offsets: std::ops::RangeInclusive<u64>) -> String {
    let frames = ws.expect_offsets(offsets).await;
    let epoch = frames[0]["epoch"].as_str().unwrap().to_owned();
    for frame in &frames {
        assert_eq!(frame["epoch"], epoch.as_str(), "{frame}");
        assert_eq!(frame["data"], frame["offset"], "{frame}");
    }
    epoch
}

/// Milliseconds `key` has left to live (`PTTL`: -1 none, -2 no such key).
fn pttl(redis: &RedisServer, key: &str) -> i64 {
    cli(redis.port, &["PTTL", key]).trim().parse().unwrap()
}

async fn reconnects(app: &TestApp) -> f64 {
    series_value(&app.metrics_text().await, "herald_broker_reconnects_total")
}

#[tokio::test]
async fn watching_nodes_deliver_a_new_epoch_after_the_groups_keys_are_flushed_or_deleted() {
    let Some(redis) = RedisServer::start_if_available("redis_expiry flush") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |c| c.history_ttl = Duration::from_secs(60)).await;
    let mut on_a = a.ws("/ws").await;
    let first = on_a.subscribe("room").await;
    let mut on_b = b.ws("/ws").await;
    on_b.subscribe("room").await;

    for offset in 1..=3 {
        notify_at(&b, offset).await;
    }
    let old = epoch_of(&mut on_a, 1..=3).await;
    assert_eq!(epoch_of(&mut on_b, 1..=3).await, old);
    assert_eq!(first["epoch"], old.as_str());
    // Every key of the group expires, no sooner than the history (60 s here).
    for key in KEYS {
        let ttl = pttl(&redis, key);
        assert!(ttl > 50_000 && ttl <= 60_000, "{key} expires in {ttl} ms");
    }

    // The group's state vanishes under the watching nodes (FLUSHALL, a failover to an
    // empty replica): offsets start over at 1 in a new epoch, and both nodes deliver.
    assert_eq!(cli(redis.port, &["FLUSHALL"]).trim(), "OK");
    for offset in 1..=2 {
        notify_at(&a, offset).await;
    }
    let flushed = epoch_of(&mut on_a, 1..=2).await;
    assert_eq!(epoch_of(&mut on_b, 1..=2).await, flushed);
    assert_ne!(flushed, old);

    // A member joining now is told the new epoch; one resuming from the old epoch is
    // not recovered (its offsets mean nothing in the new one) and gets what follows.
    let mut late = a.ws("/ws").await;
    let joined = late.subscribe("room").await;
    assert_eq!(
        (&joined["offset"], &joined["epoch"]),
        (&json!(2), &json!(flushed))
    );
    let mut resumed = b.ws("/ws").await;
    resumed
        .send_json(json!({"type":"subscribe","group":"room","since":3,"epoch":old}))
        .await;
    let reply = resumed.recv_json().await;
    assert_eq!(
        (&reply["recovered"], &reply["epoch"], &reply["offset"]),
        (&json!(false), &json!(flushed), &json!(2)),
        "{reply}"
    );

    // Only the group's keys deleted: the same again.
    assert_eq!(
        cli(redis.port, &["DEL", KEYS[0], KEYS[1], KEYS[2]]).trim(),
        "3"
    );
    notify_at(&b, 1).await;
    let mut third = None;
    for ws in [&mut on_a, &mut on_b, &mut late, &mut resumed] {
        let epoch = epoch_of(ws, 1..=1).await;
        assert_eq!(third.get_or_insert_with(|| epoch.clone()), &epoch);
    }
    assert!(third.is_some_and(|e| e != flushed && e != old));
    notify_at(&a, 2).await;
    for ws in [&mut on_a, &mut on_b, &mut late, &mut resumed] {
        ws.expect_offsets(2..=2).await;
        ws.expect_silence(Duration::from_millis(150)).await;
    }
    // No reconnect was needed (none happened): delivery went on over the same links.
    assert_eq!((reconnects(&a).await, reconnects(&b).await), (0.0, 0.0));
}

#[tokio::test]
async fn a_groups_keys_expire_after_the_history_ttl_and_the_next_notification_starts_a_new_epoch() {
    let Some(redis) = RedisServer::start_if_available("redis_expiry ttl") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |c| c.history_ttl = Duration::from_secs(1)).await;
    let mut ws = a.ws("/ws").await;
    ws.subscribe("room").await;
    notify_at(&b, 1).await;
    let old = epoch_of(&mut ws, 1..=1).await;
    for key in KEYS {
        let ttl = pttl(&redis, key);
        assert!(ttl > 0 && ttl <= 1_000, "{key} expires in {ttl} ms");
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    for key in KEYS {
        assert_eq!(cli(redis.port, &["EXISTS", key]).trim(), "0", "{key}");
    }
    notify_at(&b, 1).await;
    notify_at(&b, 2).await;
    let new = epoch_of(&mut ws, 1..=2).await;
    assert_ne!(new, old);
    ws.expect_silence(Duration::from_millis(150)).await;

    // Without history the offset and epoch still expire (after 5 minutes).
    let (c, _d) = two_nodes(&redis.url(), |c| c.history_size = 0).await;
    let reply: Value = c.notify_ok("other", "e", json!(1)).await;
    assert_eq!(reply["offset"], 1);
    for key in ["herald:{other}:offset", "herald:{other}:epoch"] {
        let ttl = pttl(&redis, key);
        assert!(ttl > 290_000 && ttl <= 300_000, "{key} expires in {ttl} ms");
    }
    assert_eq!(pttl(&redis, "herald:{other}:history"), -2);
}
