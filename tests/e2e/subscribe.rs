//! `/ws` subscribe / unsubscribe / ping, and membership through `/ws/{group}`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn subscribe_to_two_groups_then_unsubscribe_from_one() {
    let app = spawn_app().await;
    app.notify_ok("news", "e", json!(0)).await;
    let mut ws = app.ws("/ws").await;

    assert_eq!(
        ws.subscribe("news").await["offset"],
        1,
        "subscribed reports the latest offset"
    );
    assert_eq!(ws.subscribe("sport").await["offset"], 0);

    app.notify_ok("news", "headline", json!("n1")).await;
    app.notify_ok("sport", "score", json!("s1")).await;
    let got: Vec<_> = [ws.recv_json().await, ws.recv_json().await]
        .into_iter()
        .map(|f| f["data"].clone())
        .collect();
    assert_eq!(got, vec![json!("n1"), json!("s1")]);

    ws.send_json(json!({"type": "unsubscribe", "group": "news"}))
        .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "unsubscribed", "group": "news"})
    );

    app.notify_ok("news", "headline", json!("n2")).await;
    app.notify_ok("sport", "score", json!("s2")).await;
    let frame = ws.recv_json().await;
    assert_eq!(
        (frame["group"].clone(), frame["data"].clone()),
        (json!("sport"), json!("s2"))
    );
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn ping_frame_is_answered_with_pong() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws").await;
    ws.send_json(json!({"type": "ping"})).await;
    assert_eq!(ws.recv_json().await, json!({"type": "pong"}));
}

#[tokio::test]
async fn subscribing_twice_is_harmless_and_delivers_once() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws").await;
    ws.subscribe("g").await;
    ws.subscribe("g").await;
    assert_eq!(app.group("g").await["subscribers"], 1);
    app.notify_ok("g", "e", json!(1)).await;
    ws.recv_json().await;
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_connection_in_two_groups_gets_each_notification_once_per_group() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws/a").await;
    ws.subscribe("b").await;
    let res = app.notify(json!({"groups": ["a", "b"], "data": 1})).await;
    assert_eq!(res.status(), 202);
    let mut groups = vec![
        ws.recv_json().await["group"].clone(),
        ws.recv_json().await["group"].clone(),
    ];
    groups.sort_by_key(|g| g.to_string());
    assert_eq!(groups, vec![json!("a"), json!("b")]);
    ws.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn subscriptions_are_limited_per_connection() {
    let app = crate::helpers::spawn_app_with(|c| c.max_subscriptions = 2).await;
    let mut ws = app.ws("/ws/one").await;
    ws.subscribe("two").await;
    ws.send_json(json!({"type": "subscribe", "group": "three"}))
        .await;
    let err = ws.recv_json().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"], "too_many_subscriptions");
    assert_eq!(app.group("three").await["subscribers"], 0);
}

#[tokio::test]
async fn leaving_by_disconnecting_removes_the_member() {
    let app = spawn_app().await;
    let ws = app.ws("/ws/room").await;
    assert_eq!(app.group("room").await["subscribers"], 1);
    drop(ws);
    app.wait_for_subscribers("room", 0).await;
    let res = app.notify(json!({"group": "room", "data": 1})).await;
    let reply: serde_json::Value = res.json().await.unwrap();
    assert_eq!(reply["recipients"], 0);
}

#[tokio::test]
async fn client_publish_is_off_by_default() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws/chat").await;
    ws.send_json(
        json!({"type": "publish", "group": "chat", "event": "chat.message", "data": {"t": "hi"}}),
    )
    .await;
    assert_eq!(ws.recv_json().await["error"], "publish_disabled");
    assert_eq!(
        app.group("chat").await["offset"],
        0,
        "nothing was published"
    );
}

#[tokio::test]
async fn client_publish_reaches_the_whole_group_when_enabled() {
    let app = crate::helpers::spawn_app_with(|c| c.client_publish = true).await;
    let mut alice = app.ws("/ws/chat").await;
    let mut bob = app.ws("/ws/chat").await;
    alice.send_json(json!({"type": "publish", "group": "chat", "event": "chat.message", "data": {"t": "hi"}})).await;
    let got = bob.recv_json().await;
    let expected = json!({"type":"notify","group":"chat","event":"chat.message","offset":1,"epoch":got["epoch"],"data":{"t":"hi"}});
    assert!(got["epoch"].is_string(), "{got}");
    assert_eq!(got, expected);
    assert_eq!(
        alice.recv_json().await,
        expected,
        "the sender is a member too"
    );

    alice
        .send_json(json!({"type": "publish", "group": "elsewhere", "data": 1}))
        .await;
    assert_eq!(alice.recv_json().await["error"], "not_subscribed");
}
