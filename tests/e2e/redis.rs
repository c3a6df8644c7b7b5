//! Several herald nodes on one real Redis behave as one hub.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    eventually, mint_token, now, poll_until, redis_node, series_value, two_nodes, user_token,
    wait_ready, TestApp, Ws, SECRET, WAIT,
};
use crate::process::Herald;
use crate::redis_server::{cli, RedisServer};

/// Like `Ws::expect_offsets`, for thousands of clients at once: the offset is read straight out
/// of the frame (herald writes `"offset":N,` before `data`) instead of parsing all of it,
/// and a slow machine gets a minute per frame.
async fn quick_offsets(mut ws: Ws, n: usize) -> Vec<u64> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.0.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("websocket error");
        let text = match msg {
            Message::Text(text) => text,
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!(
                "expected a notify frame after {} of them, got {other:?}",
                out.len()
            ),
        };
        let at = text.find(r#""offset":"#).expect("a notify frame") + 9;
        let digits = text[at..].split(',').next().unwrap();
        out.push(digits.parse().unwrap());
    }
    out
}

/// Polls `GET /groups/{group}` on `app` until `subscribers` is `n`, failing after
/// `within`.
async fn wait_count(app: &TestApp, group: &str, n: u64, within: Duration) {
    poll_until(within, || async {
        let got = app.group(group).await["subscribers"].clone();
        if got == n {
            Ok(())
        } else {
            Err(format!("{got}, not {n}"))
        }
    })
    .await
    .unwrap_or_else(|why| panic!("{group} never counted {n} subscribers across nodes: {why}"))
}

#[tokio::test]
async fn a_notify_on_one_node_reaches_every_member_on_both_exactly_once() {
    let Some(redis) = RedisServer::start_if_available("redis cross-node fan-out") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |_| {}).await;
    let mut clients = Vec::new();
    for node in [&a, &b, &a, &b] {
        clients.push(node.ws("/ws/room").await);
    }
    let reply = a.notify_ok("room", "chat", json!({"n": 1})).await;
    assert_eq!(reply["offset"], 1);
    assert_eq!(reply["recipients"], 2, "both nodes watch the group");
    let mut epochs = Vec::new();
    for ws in &mut clients {
        let frame = ws.recv_json().await;
        let epoch = frame["epoch"].clone();
        assert_eq!(
            frame,
            json!({"type":"notify","group":"room","event":"chat","offset":1,"epoch":epoch,"data":{"n":1}})
        );
        epochs.push(epoch);
    }
    assert!(
        epochs.windows(2).all(|w| w[0] == w[1]),
        "one epoch on every node: {epochs:?}"
    );
    let reply = b.notify_ok("room", "chat", json!({"n": 2})).await;
    assert_eq!(reply["offset"], 2);
    for ws in &mut clients {
        ws.expect_offsets(2..=2).await;
        ws.expect_silence(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn both_nodes_publishing_at_once_give_every_member_one_gap_free_sequence() {
    const EACH: usize = 500;
    let Some(redis) = RedisServer::start_if_available("redis concurrent publishers") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |_| {}).await;
    let mut readers = Vec::new();
    for node in [&a, &b, &a, &b] {
        let mut ws = node.ws("/ws/race").await;
        // Every member: 1..=1000 strictly increasing, no gap.
        readers.push(tokio::spawn(async move {
            ws.expect_offsets(1..=2 * EACH as u64).await;
        }));
    }
    let publish = |node: &TestApp| {
        let (http, url) = (node.http.clone(), node.url("/notify"));
        tokio::spawn(async move {
            for i in 0..EACH {
                let res = http
                    .post(&url)
                    .json(&json!({"group": "race", "data": i}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
            }
        })
    };
    let (pa, pb) = (publish(&a), publish(&b));
    pa.await.unwrap();
    pb.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn targeting_and_closes_issued_on_one_node_reach_members_on_the_other() {
    let Some(redis) = RedisServer::start_if_available("redis cross-node targeting and close")
    else {
        return;
    };
    let auth = |c: &mut herald::Config| c.jwt_secret = Some(SECRET.to_owned().into());
    let (a, mut b) = two_nodes(&redis.url(), auth).await;
    b.bearer = Some(mint_token(
        json!({"sub": "backend", "exp": now() + 600, "scope": "notify"}),
    ));
    let mut ana = a.ws_as("/ws/room", &user_token("ana", &["room"])).await;
    let mut bob = a.ws_as("/ws/room", &user_token("bob", &["room"])).await;
    let mut ana_tab = a.ws_as("/ws/lobby", &user_token("ana", &["lobby"])).await;

    let res = b
        .notify(json!({"group": "room", "users": ["ana"], "data": "psst"}))
        .await;
    assert_eq!(res.status(), 202);
    assert_eq!(ana.recv_json().await["data"], "psst");
    bob.expect_silence(Duration::from_millis(300)).await;

    let res = b
        .post_json(
            "/users/ana/close",
            &json!({"code": 4403, "reason": "banned"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["closed"],
        2,
        "both of ana's tabs, on node A"
    );
    assert_eq!(ana.expect_close().await, (4403, "banned".into()));
    assert_eq!(ana_tab.expect_close().await, (4403, "banned".into()));

    let res = b
        .close_group("room", json!({"code": 4000, "reason": "maintenance"}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["closed"],
        1,
        "bob, on node A"
    );
    assert_eq!(bob.expect_close().await, (4000, "maintenance".into()));
}

#[tokio::test]
async fn counts_cover_every_node_and_a_killed_node_drops_out_after_its_ttl() {
    let Some(redis) = RedisServer::start_if_available("redis cluster-wide counts") else {
        return;
    };
    let a = redis_node(&redis.url(), |_| {}).await;
    let other = Herald::start(
        &["--redis-url", &redis.url(), "--redis-node-ttl", "2s"],
        &[],
    );
    // It listens at once but serves groups only once Redis answers.
    eventually(|| async {
        match reqwest::get(other.url("/readyz")).await.unwrap().status() {
            status if status == 200 => Ok(()),
            status => Err(format!("the process node never became ready ({status})")),
        }
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(other.ws_url("/ws/count"))
            .await
            .unwrap();
        held.push(ws);
    }
    let _mine = [a.ws("/ws/count").await, a.ws("/ws/count").await];
    wait_count(&a, "count", 5, WAIT).await;
    let list = a.get_json("/groups").await;
    assert_eq!(
        list["groups"],
        json!([{"group": "count", "subscribers": 5}])
    );

    other.signal("KILL");
    // The killed node's entry expires within its 2 s TTL; allow for the poll.
    wait_count(&a, "count", 2, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn with_redis_down_notify_is_503_and_clients_stay_then_delivery_resumes_once() {
    let Some(mut redis) = RedisServer::start_if_available("redis outage") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |_| {}).await;
    let (mut on_a, mut on_b) = (a.ws("/ws/outage").await, b.ws("/ws/outage").await);
    a.notify_ok("outage", "e", json!(1)).await;
    on_a.expect_offsets(1..=1).await;
    on_b.expect_offsets(1..=1).await;

    redis.stop();
    wait_ready(&a, false).await;
    wait_ready(&b, false).await;
    let res = a.notify(json!({"group": "outage", "data": 2})).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "unavailable");
    for ws in [&mut on_a, &mut on_b] {
        ws.send_json(json!({"type": "ping"})).await;
        assert_eq!(
            ws.recv_json().await["type"],
            "pong",
            "clients stay connected"
        );
    }

    redis.restart();
    wait_ready(&a, true).await;
    wait_ready(&b, true).await;
    // A fresh Redis starts offsets again at 1; both nodes re-subscribed and re-synced.
    let reply = b.notify_ok("outage", "e", json!(3)).await;
    assert_eq!(reply["offset"], 1);
    for ws in [&mut on_a, &mut on_b] {
        ws.expect_offsets(1..=1).await;
        ws.expect_silence(Duration::from_millis(300)).await;
    }
    let metrics = a.metrics_text().await;
    let value = |name: &str| series_value(&metrics, name);
    assert!(value("herald_broker_reconnects_total") >= 1.0, "{metrics}");
    assert!(value("herald_broker_publish_errors_total") >= 1.0);
}

#[tokio::test]
async fn a_node_subscribes_only_to_groups_it_serves_and_leaves_with_the_last_member() {
    let Some(redis) = RedisServer::start_if_available("redis channel subscriptions") else {
        return;
    };
    let a = redis_node(&redis.url(), |_| {}).await;
    a.notify_ok("elsewhere", "e", json!(1)).await;
    let mut ws = a.ws("/ws").await;
    ws.subscribe("served").await;
    let channels = |redis: &RedisServer| {
        let mut list: Vec<String> = cli(redis.port, &["PUBSUB", "CHANNELS", "herald:*"])
            .lines()
            .map(str::to_owned)
            .collect();
        list.sort();
        list
    };
    assert_eq!(
        channels(&redis),
        ["herald:{nodes}:control", "herald:{served}"]
    );
    ws.send_json(json!({"type": "unsubscribe", "group": "served"}))
        .await;
    assert_eq!(ws.recv_json().await["type"], "unsubscribed");
    assert_eq!(channels(&redis), ["herald:{nodes}:control"]);
}

// Two workers: both nodes, 4,000 clients and the publishers share this test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_2000_members_each_get_500_notifications_without_loss() {
    const PER_NODE: usize = 2000;
    const NOTIFICATIONS: usize = 500;
    let Some(redis) = RedisServer::start_if_available("redis fan-out at size") else {
        return;
    };
    let (a, b) = two_nodes(&redis.url(), |_| {}).await;
    let mut readers = Vec::new();
    for node in [&a, &b] {
        for _ in 0..PER_NODE {
            let ws = node.ws("/ws/crowd").await;
            readers.push(tokio::spawn(quick_offsets(ws, NOTIFICATIONS)));
        }
    }
    // 25 requests in flight through each node, as busy backends would send them.
    let mut publishers = Vec::new();
    for (node, lane) in [(&a, 0), (&b, 1)]
        .into_iter()
        .flat_map(|(n, side)| (0..25).map(move |l| (n, side * 25 + l)))
    {
        let (http, url) = (node.http.clone(), node.url("/notify"));
        publishers.push(tokio::spawn(async move {
            for i in (lane..NOTIFICATIONS).step_by(50) {
                let res = http
                    .post(&url)
                    .json(&json!({"group": "crowd", "data": i}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 202);
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let expected: Vec<u64> = (1..=NOTIFICATIONS as u64).collect();
    for reader in readers {
        assert_eq!(
            reader.await.unwrap(),
            expected,
            "every member: all 500, in order, once"
        );
    }
}
