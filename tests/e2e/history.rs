//! History and recovery: a client that reconnects with `since` and `epoch` gets exactly
//! what it missed, in order, then live notifications; `recovered:false` when the gap
//! cannot be filled; targeted notifications replay only to their users; a memory-broker
//! restart changes the epoch.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    series_value, spawn_app, spawn_app_with, spawn_auth_app, user_token, TestApp, Ws,
};
use crate::process::Herald;

/// Where a client stands after reading one notification: its offset and epoch.
struct Seen {
    offset: u64,
    epoch: String,
}

/// Connects to `/ws/{group}`, has one notification sent, remembers where it stood and
/// disconnects, as a client whose network drops would; `others` members stay.
async fn see_one_and_leave(app: &TestApp, group: &str, others: u64) -> Seen {
    let mut ws = app.ws(&format!("/ws/{group}")).await;
    app.notify_ok(group, "e", json!("before")).await;
    let frame = ws.recv_json().await;
    assert_eq!(frame["type"], "notify");
    let epoch = frame["epoch"].as_str().expect("notify carries the epoch");
    let seen = Seen {
        offset: frame["offset"].as_u64().unwrap(),
        epoch: epoch.to_owned(),
    };
    ws.0.close(None).await.unwrap();
    app.wait_for_subscribers(group, others).await;
    seen
}

/// Sends `n` notifications to `group` whose data are 1..=n.
async fn miss(app: &TestApp, group: &str, n: u64) {
    for i in 1..=n {
        app.notify_ok(group, "missed", json!(i)).await;
    }
}

fn subscribed(group: &str, offset: u64, epoch: &str, recovered: bool) -> Value {
    json!({"type":"subscribed","group":group,"offset":offset,"epoch":epoch,"recovered":recovered})
}

/// The value of one series in a `/metrics` scrape (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    series_value(&app.metrics_text().await, series)
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_ones() {
    let app = spawn_app().await;
    let seen = see_one_and_leave(&app, "news", 0).await;
    miss(&app, "news", 10).await;
    let (since, epoch) = (seen.offset, seen.epoch.as_str());

    // The URL form.
    let mut back = app
        .ws(&format!("/ws/news?since={since}&epoch={epoch}"))
        .await;
    assert_eq!(back.recv_json().await, subscribed("news", 11, epoch, true));
    let replayed = back.expect_offsets(since + 1..=since + 10).await;
    let data: Vec<&Value> = replayed.iter().map(|f| &f["data"]).collect();
    assert_eq!(
        data,
        (1..=10)
            .map(|i| json!(i))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert!(replayed.iter().all(|f| f["epoch"] == epoch));
    app.notify_ok("news", "live", json!("after")).await;
    let live = back.recv_json().await;
    assert_eq!(
        (&live["offset"], &live["data"]),
        (&json!(12), &json!("after"))
    );

    // The subscribe frame on /ws, from the same point: the replay reaches 12 now.
    let mut other = app.ws("/ws").await;
    other
        .send_json(json!({"type":"subscribe","group":"news","since":since,"epoch":epoch}))
        .await;
    assert_eq!(other.recv_json().await, subscribed("news", 12, epoch, true));
    other.expect_offsets(since + 1..=12).await;
    app.notify_ok("news", "live", json!("both")).await;
    other.expect_offsets(13..=13).await;
    back.expect_offsets(13..=13).await;
    back.expect_silence(Duration::from_millis(100)).await;

    let recovered = r#"herald_history_recoveries_total{outcome="recovered"}"#;
    assert_eq!(metric(&app, recovered).await, 2.0);
    assert_eq!(metric(&app, "herald_history_entries").await, 13.0);
    assert!(metric(&app, "herald_history_bytes").await > 13.0 * 60.0);
}

#[tokio::test]
async fn a_gap_history_cannot_fill_answers_recovered_false_then_live() {
    // Larger than --history-size.
    let app = spawn_app_with(|c| c.history_size = 5).await;
    let seen = see_one_and_leave(&app, "g", 0).await;
    miss(&app, "g", 10).await;
    let url = format!("/ws/g?since={}&epoch={}", seen.offset, seen.epoch);
    let mut back = app.ws(&url).await;
    assert_eq!(
        back.recv_json().await,
        subscribed("g", 11, &seen.epoch, false)
    );
    app.notify_ok("g", "live", json!("after")).await;
    back.expect_offsets(12..=12).await;

    // A wrong epoch, even for an offset that exists.
    let mut wrong = app.ws("/ws").await;
    wrong
        .send_json(json!({"type":"subscribe","group":"g","since":11,"epoch":"not-this-one"}))
        .await;
    assert_eq!(
        wrong.recv_json().await,
        subscribed("g", 12, &seen.epoch, false)
    );
    app.notify_ok("g", "live", json!("again")).await;
    wrong.expect_offsets(13..=13).await;
    let gap = r#"herald_history_recoveries_total{outcome="gap"}"#;
    let epoch_changed = r#"herald_history_recoveries_total{outcome="epoch_changed"}"#;
    assert_eq!(
        (metric(&app, gap).await, metric(&app, epoch_changed).await),
        (1.0, 1.0)
    );

    // Older than --history-ttl: a member stays, so the epoch does, but history goes.
    let app = spawn_app_with(|c| c.history_ttl = Duration::from_millis(300)).await;
    let _bystander = app.ws("/ws/t").await;
    let seen = see_one_and_leave(&app, "t", 1).await;
    miss(&app, "t", 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let url = format!("/ws/t?since={}&epoch={}", seen.offset, seen.epoch);
    let mut late = app.ws(&url).await;
    assert_eq!(
        late.recv_json().await,
        subscribed("t", 3, &seen.epoch, false)
    );
    app.notify_ok("t", "live", json!("after")).await;
    late.expect_offsets(4..=4).await;
}

#[tokio::test]
async fn a_replay_larger_than_the_send_queue_closes_as_a_slow_consumer() {
    let app = spawn_app_with(|c| c.send_queue = 4).await;
    let seen = see_one_and_leave(&app, "big", 0).await;
    miss(&app, "big", 10).await;
    let url = format!("/ws/big?since={}&epoch={}", seen.offset, seen.epoch);
    let mut back = app.ws(&url).await;
    let (frames, code, reason) = back.read_until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!((code, reason.as_str()), (4100, "slow_consumer"));
}

#[tokio::test]
async fn targeted_notifications_replay_only_to_their_users() {
    let app = spawn_auth_app(|_| {}).await;
    let (ana, bob) = (user_token("ana", &["room"]), user_token("bob", &["room"]));
    let mut first = app.ws_as("/ws/room", &ana).await;
    app.notify_ok("room", "e", json!("all")).await;
    let frame = first.recv_json().await;
    let epoch = frame["epoch"].as_str().unwrap().to_owned();
    first.0.close(None).await.unwrap();
    app.wait_for_subscribers("room", 0).await;

    for (users, data) in [
        (Some(["ana"]), "for ana"),
        (None, "for all"),
        (Some(["bob"]), "for bob"),
    ] {
        let mut body = json!({"group": "room", "data": data});
        if let Some(users) = users {
            body["users"] = json!(users);
        }
        assert_eq!(app.notify(body).await.status(), 202);
    }
    let url = format!("/ws/room?since=1&epoch={epoch}");
    for (token, want) in [
        (&ana, ["for ana", "for all"]),
        (&bob, ["for all", "for bob"]),
    ] {
        let mut ws = app.ws_as(&url, token).await;
        assert_eq!(ws.recv_json().await, subscribed("room", 4, &epoch, true));
        for data in want {
            assert_eq!(ws.recv_json().await["data"], data);
        }
        ws.expect_silence(Duration::from_millis(150)).await;
    }
}

#[tokio::test]
async fn a_memory_broker_restart_changes_the_epoch_and_resumes_are_not_recovered() {
    let http = reqwest::Client::new();
    let notify = |herald: &Herald, data: Value| {
        http.post(herald.url("/notify"))
            .json(&json!({"group": "r", "data": data}))
            .send()
    };
    let before = Herald::start(&[], &[]);
    let (stream, _) = tokio_tungstenite::connect_async(before.ws_url("/ws/r"))
        .await
        .unwrap();
    let mut ws = Ws(stream);
    assert_eq!(notify(&before, json!(1)).await.unwrap().status(), 202);
    let frame = ws.recv_json().await;
    let old_epoch = frame["epoch"].as_str().unwrap().to_owned();
    drop(ws);
    drop(before);

    let after = Herald::start(&[], &[]);
    assert_eq!(notify(&after, json!(2)).await.unwrap().status(), 202);
    let url = after.ws_url(&format!("/ws/r?since=1&epoch={old_epoch}"));
    let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut back = Ws(stream);
    let reply = back.recv_json().await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["offset"], 1);
    assert_ne!(
        reply["epoch"],
        old_epoch.as_str(),
        "a restart starts a new epoch"
    );
    assert_eq!(notify(&after, json!(3)).await.unwrap().status(), 202);
    let live = back.recv_json().await;
    assert_eq!(
        (&live["offset"], &live["epoch"]),
        (&json!(2), &reply["epoch"])
    );
}

#[tokio::test]
async fn resuming_a_group_the_connection_is_already_in_replays_nothing_twice() {
    let app = spawn_auth_app(|_| {}).await;
    app.notify_ok("user:ana", "e", json!(1)).await;
    // The path's group is also the personal group, joined first.
    let token = user_token("ana", &[]);
    let mut ws = app.ws_as("/ws/user:ana?since=0&epoch=any", &token).await;
    let reply = ws.recv_json().await;
    assert_eq!(
        (&reply["type"], &reply["offset"]),
        (&json!("subscribed"), &json!(1))
    );
    assert_eq!(reply["recovered"], false);
    app.notify_ok("user:ana", "e", json!(2)).await;
    ws.expect_offsets(2..=2).await;
    ws.expect_silence(Duration::from_millis(150)).await;
}
