//! Fan-out: the right members get each notification exactly once, in offset order.

use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn notify_reaches_every_member_of_the_group_once_and_no_one_else() {
    let app = spawn_app().await;
    let mut a1 = app.ws("/ws/A").await;
    let mut a2 = app.ws("/ws/A").await;
    let mut b = app.ws("/ws/B").await;

    let reply = app
        .notify_ok("A", "chat.message", json!({"text": "hello", "n": 1}))
        .await;
    assert_eq!(reply["offset"], 1);
    assert_eq!(reply["recipients"], 2);
    assert!(reply["id"].as_str().is_some_and(|id| !id.is_empty()));

    for client in [&mut a1, &mut a2] {
        let frame = client.recv_json().await;
        let epoch = &frame["epoch"];
        assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{frame}");
        assert_eq!(
            frame,
            json!({"type":"notify","group":"A","event":"chat.message","offset":1,"epoch":epoch,"data":{"text":"hello","n":1}})
        );
        client.expect_silence(Duration::from_millis(200)).await;
    }
    b.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn event_defaults_to_message_and_data_may_be_any_json_value() {
    let app = spawn_app().await;
    let mut ws = app.ws("/ws/g").await;
    for data in [json!(null), json!("text"), json!(42), json!([1, {"a": []}])] {
        let res = app.notify(json!({"group": "g", "data": data})).await;
        assert_eq!(res.status(), 202);
        let frame = ws.recv_json().await;
        assert_eq!(frame["event"], "message");
        assert_eq!(frame["data"], data);
    }
}

#[tokio::test]
async fn notify_to_several_groups_reports_an_offset_per_group() {
    let app = spawn_app().await;
    app.notify_ok("b", "e", json!(0)).await;
    let mut a = app.ws("/ws/a").await;
    let mut b = app.ws("/ws/b").await;

    let res = app
        .notify(json!({"groups": ["a", "b"], "event": "news", "data": {"x": 1}}))
        .await;
    assert_eq!(res.status(), 202);
    let reply: serde_json::Value = res.json().await.unwrap();
    assert_eq!(reply["recipients"], 2);
    assert_eq!(
        reply["groups"],
        json!([{"group":"a","offset":1,"recipients":1},{"group":"b","offset":2,"recipients":1}])
    );
    assert_eq!(a.recv_json().await["offset"], 1);
    assert_eq!(b.recv_json().await["offset"], 2);
}

#[tokio::test]
async fn a_thousand_subscribers_get_two_hundred_notifications_without_loss_or_duplicates() {
    const SUBSCRIBERS: usize = 1000;
    const NOTIFICATIONS: u64 = 200;
    let app = spawn_app().await;
    let mut clients = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        clients.push(app.ws("/ws/crowd").await);
    }
    app.wait_for_subscribers("crowd", SUBSCRIBERS as u64).await;

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut offsets = Vec::with_capacity(NOTIFICATIONS as usize);
                while offsets.len() < NOTIFICATIONS as usize {
                    let frame = ws.recv_json().await;
                    assert_eq!(
                        frame["data"]["seq"], frame["offset"],
                        "payload and offset belong together"
                    );
                    offsets.push(frame["offset"].as_u64().unwrap());
                }
                offsets
            })
        })
        .collect();

    for seq in 1..=NOTIFICATIONS {
        let reply = app.notify_ok("crowd", "tick", json!({"seq": seq})).await;
        assert_eq!(reply["recipients"], SUBSCRIBERS);
    }

    let expected: Vec<u64> = (1..=NOTIFICATIONS).collect();
    for reader in readers {
        // Strictly increasing and complete: exactly 1..=200 in order, no gap, no repeat.
        assert_eq!(reader.await.unwrap(), expected);
    }
}
