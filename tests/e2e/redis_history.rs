//! History on the Redis broker: every node reads the same Stream and epoch, so a client
//! dropped by one node resumes on another with nothing missed, and a node restart keeps
//! the epoch.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{mint_token, now, redis_node, two_nodes, user_token, TestApp, Ws, SECRET};
use crate::redis_server::{cli, RedisServer};

/// Notifies through `app` and asserts it was accepted with `offset`.
async fn notify_at(app: &TestApp, offset: u64, data: Value) {
    let reply = app.notify_ok("room", "e", data).await;
    assert_eq!(reply["offset"], offset, "{reply}");
}

/// Reads notify frames and asserts their offsets are exactly `offsets`, all in `epoch`.
async fn expect_offsets(ws: &mut Ws, offsets: std::ops::RangeInclusive<u64>, epoch: &str) {
    for frame in ws.expect_offsets(offsets).await {
        assert_eq!(frame["epoch"], epoch, "{frame}");
    }
}

#[tokio::test]
async fn a_client_dropped_by_one_node_resumes_on_another_and_restarts_keep_the_epoch() {
    let Some(redis) = RedisServer::start_if_available("redis_history") else {
        return;
    };
    let a = redis_node(&redis.url(), |_| {}).await;
    let b = redis_node(&redis.url(), |c| c.history_ttl = Duration::from_secs(60)).await;

    let mut ws = a.ws("/ws/room").await;
    notify_at(&b, 1, json!("seen")).await;
    let frame = ws.recv_json().await;
    let epoch = frame["epoch"].as_str().unwrap().to_owned();
    assert_eq!(frame["offset"], 1);
    drop(ws);

    // Missed while away, published through both nodes.
    for offset in 2..=11 {
        let node = if offset % 2 == 0 { &a } else { &b };
        notify_at(node, offset, json!(offset)).await;
    }
    let mut back = b.ws(&format!("/ws/room?since=1&epoch={epoch}")).await;
    let subscribed = back.recv_json().await;
    assert_eq!(
        subscribed,
        json!({"type":"subscribed","group":"room","offset":11,"epoch":epoch,"recovered":true})
    );
    expect_offsets(&mut back, 2..=11, &epoch).await;
    notify_at(&a, 12, json!("live")).await;
    expect_offsets(&mut back, 12..=12, &epoch).await;
    back.expect_silence(Duration::from_millis(100)).await;

    // One Stream per group in Redis, beside the offset and the epoch, expiring.
    let ttl: i64 = cli(redis.port, &["PTTL", "herald:{room}:history"])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0, "the history Stream has an expiry ({ttl})");
    assert_eq!(
        cli(redis.port, &["GET", "herald:{room}:epoch"]).trim(),
        epoch
    );
    let history = a.get_json("/groups/room/history?since=10").await;
    assert_eq!(
        (&history["epoch"], &history["offset"]),
        (&json!(epoch), &json!(12))
    );
    let offsets: Vec<&Value> = history["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["offset"])
        .collect();
    assert_eq!(offsets, [&json!(11), &json!(12)]);

    // Every node restarts: the epoch is Redis's, so resuming still recovers.
    drop(back);
    a.shutdown().await;
    b.shutdown().await;
    let c = redis_node(&redis.url(), |_| {}).await;
    notify_at(&c, 13, json!("after restart")).await;
    let mut again = c.ws("/ws").await;
    again
        .send_json(json!({"type":"subscribe","group":"room","since":12,"epoch":epoch}))
        .await;
    let subscribed = again.recv_json().await;
    assert_eq!(
        (&subscribed["epoch"], &subscribed["recovered"]),
        (&json!(epoch), &json!(true))
    );
    expect_offsets(&mut again, 13..=13, &epoch).await;
}

#[tokio::test]
async fn targeted_notifications_replay_only_to_their_users_across_nodes() {
    let Some(redis) = RedisServer::start_if_available("redis_history targeting") else {
        return;
    };
    let auth = |c: &mut herald::Config| c.jwt_secret = Some(SECRET.to_owned().into());
    let (a, mut b) = two_nodes(&redis.url(), auth).await;
    b.bearer = Some(mint_token(
        json!({"sub":"backend","exp": now() + 600,"scope":"notify"}),
    ));
    for (users, data) in [(json!(["ana"]), "for ana"), (json!(null), "for all")] {
        let mut body = json!({"group":"room","data":data});
        if !users.is_null() {
            body["users"] = users;
        }
        assert_eq!(b.notify(body).await.status(), 202);
    }
    let epoch = b.get_json("/groups/room/history").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("/ws/room?since=0&epoch={epoch}");
    for (user, want) in [
        ("ana", vec!["for ana", "for all"]),
        ("bob", vec!["for all"]),
    ] {
        let mut ws = a.ws_as(&url, &user_token(user, &["room"])).await;
        assert_eq!(ws.recv_json().await["recovered"], true);
        for data in want {
            assert_eq!(ws.recv_json().await["data"], data, "{user}");
        }
        ws.expect_silence(Duration::from_millis(100)).await;
    }
}
