//! `POST /notify/batch`: many notifications in one request, checked as a whole, then
//! published in item order.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{mint_token, now, spawn_app, spawn_app_with, spawn_auth_app, user_token};

/// `POST /notify/batch` with `items` as its notifications.
async fn batch(app: &crate::helpers::TestApp, items: Vec<Value>) -> reqwest::Response {
    app.post_json("/notify/batch", &json!({ "notifications": items }))
        .await
}

/// A `400`/`413` error body, asserted to have `status` and `error`; returns its message.
async fn refused(res: reqwest::Response, status: u16, error: &str) -> String {
    let got = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_batch_keeps_item_order_within_each_group_and_replies_in_item_order() {
    let app = spawn_app().await;
    let mut a = app.ws("/ws/a").await;
    let mut b = app.ws("/ws/b").await;
    // Items to a and b interleaved, 300 in all.
    let items: Vec<Value> = (0..300)
        .map(|i| json!({"group": if i % 3 == 0 { "b" } else { "a" }, "event": "tick", "data": {"i": i}}))
        .collect();

    let res = batch(&app, items.clone()).await;

    assert_eq!(res.status(), 202);
    let reply: Value = res.json().await.unwrap();
    let results = reply["results"].as_array().unwrap();
    assert_eq!(results.len(), items.len());
    let (mut next_a, mut next_b) = (1, 1);
    for (item, result) in items.iter().zip(results) {
        let next = if item["group"] == "a" {
            &mut next_a
        } else {
            &mut next_b
        };
        assert_eq!(result["offset"], *next, "{result}");
        assert_eq!(result["recipients"], 1);
        assert!(result["id"].as_str().is_some_and(|id| id.len() == 32));
        *next += 1;
    }
    for (ws, group) in [(&mut a, "a"), (&mut b, "b")] {
        let sent: Vec<&Value> = items.iter().filter(|i| i["group"] == group).collect();
        for (n, item) in sent.iter().enumerate() {
            let frame = ws.recv_json().await;
            assert_eq!(frame["offset"], n + 1, "{group}: {frame}");
            assert_eq!(frame["data"], item["data"], "{group}: out of order");
        }
        ws.expect_silence(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_bad_item_refuses_the_whole_batch_naming_its_index_and_publishes_nothing() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;
    let good = json!({"group": "g", "data": 1});
    let cases = [
        (json!({"group": "bad name", "data": 1}), "invalid_group"),
        (
            json!({"group": "g", "event": "", "data": 1}),
            "invalid_event",
        ),
        (json!({"group": "g"}), "invalid_request"),
        (
            json!({"group": "g", "groups": ["h"], "data": 1}),
            "invalid_request",
        ),
        (
            json!({"group": "g", "data": 1, "extra": true}),
            "invalid_request",
        ),
        (
            json!({"group": "g", "users": ["a\u{1}control"], "data": 1}),
            "invalid_user",
        ),
        (json!(["g", 1]), "invalid_request"),
    ];
    for (bad, error) in cases {
        let items = vec![good.clone(), good.clone(), bad.clone(), good.clone()];

        let message = refused(batch(&app, items).await, 400, error).await;

        assert!(
            message.starts_with("notifications[2]: "),
            "{bad}: {message}"
        );
    }
    assert_eq!(app.group("g").await["offset"], 0, "nothing was published");
    member.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn batches_must_hold_1_to_1000_items_within_the_body_limits() {
    let app = spawn_app_with(|c| c.max_batch_body = 200_000).await;
    let item = json!({"group": "g", "data": "x"});

    let message = refused(batch(&app, vec![]).await, 400, "invalid_request").await;
    assert!(message.contains("1 to 1000"), "{message}");
    let message = refused(
        batch(&app, vec![item.clone(); 1001]).await,
        400,
        "invalid_request",
    )
    .await;
    assert!(message.contains("got 1001"), "{message}");
    let res = batch(&app, vec![item.clone(); 1000]).await;
    assert_eq!(res.status(), 202);

    // One notification is held to --max-body (64 KiB) like a POST /notify body...
    let big = json!({"group": "g", "data": "y".repeat(70_000)});
    let message = refused(
        batch(&app, vec![item.clone(), big]).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(message.starts_with("notifications[1]: "), "{message}");
    assert!(message.contains("--max-body"), "{message}");
    // ...while the batch may pass --max-body, up to --max-batch-body.
    let items = vec![json!({"group": "g", "data": "z".repeat(30_000)}); 4];
    assert_eq!(batch(&app, items).await.status(), 202);
    let items = vec![json!({"group": "g", "data": "z".repeat(60_000)}); 4];
    let message = refused(batch(&app, items).await, 413, "payload_too_large").await;
    assert!(message.contains("--max-batch-body"), "{message}");

    assert_eq!(app.group("g").await["offset"], 1004);
}

#[tokio::test]
async fn a_batch_mixes_group_groups_and_users_items() {
    let app = spawn_auth_app(|_| {}).await;
    let mut ann = app.ws_as("/ws/room", &user_token("ann", &["room"])).await;
    let mut bob = app.ws_as("/ws/room", &user_token("bob", &["room"])).await;
    let mut lobby = app.ws_as("/ws/lobby", &user_token("cat", &["lobby"])).await;
    let items = vec![
        json!({"group": "room", "event": "all", "data": 1}),
        json!({"groups": ["room", "lobby"], "event": "both", "data": 2}),
        json!({"group": "room", "users": ["bob"], "event": "dm", "data": 3}),
        json!({"group": "lobby", "data": 4}),
    ];

    let res = batch(&app, items).await;

    assert_eq!(res.status(), 202);
    let reply: Value = res.json().await.unwrap();
    let r = &reply["results"];
    assert_eq!(
        (&r[0]["offset"], &r[0]["recipients"]),
        (&json!(1), &json!(2))
    );
    assert!(r[0].get("groups").is_none());
    assert_eq!(r[1]["recipients"], 3);
    assert_eq!(
        r[1]["groups"],
        json!([{"group":"room","offset":2,"recipients":2},{"group":"lobby","offset":1,"recipients":1}])
    );
    assert!(r[1].get("offset").is_none());
    assert_eq!(
        (&r[2]["offset"], &r[2]["recipients"]),
        (&json!(3), &json!(1))
    );
    assert_eq!(
        (&r[3]["offset"], &r[3]["recipients"]),
        (&json!(2), &json!(1))
    );

    let events = |frames: Vec<Value>| -> Vec<(String, u64)> {
        frames
            .iter()
            .map(|f| {
                (
                    f["event"].as_str().unwrap().to_owned(),
                    f["offset"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let ann_got = vec![ann.recv_json().await, ann.recv_json().await];
    ann.expect_silence(Duration::from_millis(200)).await;
    let mut bob_got = Vec::new();
    for _ in 0..3 {
        bob_got.push(bob.recv_json().await);
    }
    let lobby_got = vec![lobby.recv_json().await, lobby.recv_json().await];
    assert_eq!(events(ann_got), [("all".into(), 1), ("both".into(), 2)]);
    assert_eq!(
        events(bob_got),
        [("all".into(), 1), ("both".into(), 2), ("dm".into(), 3)]
    );
    assert_eq!(
        events(lobby_got),
        [("both".into(), 1), ("message".into(), 2)]
    );
}

#[tokio::test]
async fn a_batch_needs_the_notify_scope_and_counts_each_notification() {
    let mut app = spawn_auth_app(|_| {}).await;
    let backend = app.bearer.take();
    let items = vec![json!({"group": "g", "data": 1}); 3];
    let read_only = mint_token(json!({"sub": "svc", "exp": now() + 600, "scope": "read"}));
    for (token, status) in [(None, 401), (Some(read_only), 403), (backend, 202)] {
        app.bearer = token;
        assert_eq!(batch(&app, items.clone()).await.status(), status);
    }
    assert_eq!(
        app.notify(json!({"group": "g", "data": 1})).await.status(),
        202
    );

    let text = app.metrics_text().await;
    for line in [
        r#"herald_notifications_accepted_total{route="/notify/batch"} 3"#,
        r#"herald_notifications_accepted_total{route="/notify"} 1"#,
        r#"herald_http_requests_total{route="/notify/batch",status="202"} 1"#,
        r#"herald_http_requests_total{route="/notify/batch",status="403"} 1"#,
        "herald_fanout_size_count 4",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
}

#[tokio::test]
async fn a_batch_on_one_redis_node_reaches_members_on_both_in_item_order() {
    use crate::helpers::two_nodes;
    use crate::redis_server::RedisServer;
    let Some(redis) = RedisServer::start_if_available("redis batch notify") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |_| {}).await;
    let mut on_a = a.ws("/ws/room").await;
    let mut on_b = b.ws("/ws/room").await;
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"group": "room", "data": {"i": i}}))
        .collect();

    let res = batch(&a, items).await;

    assert_eq!(res.status(), 202);
    let reply: Value = res.json().await.unwrap();
    let got: Vec<u64> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["offset"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=50).collect();
    assert_eq!(got, expected);
    for ws in [&mut on_a, &mut on_b] {
        ws.expect_offsets(1..=50).await;
    }
}
