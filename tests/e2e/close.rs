//! `POST /groups/{group}/close`: every member gets the requested close code and reason,
//! after whatever was already sent to it, and nobody outside the group is touched.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp};

/// Closes `group` and asserts `200 {"closed": n}`.
async fn close_ok(app: &TestApp, group: &str, body: Value, n: u64) {
    let res = app.close_group(group, body).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"closed": n}));
}

#[tokio::test]
async fn closing_a_group_closes_every_member_with_the_code_and_reason_and_no_one_else() {
    let app = spawn_app().await;
    let mut members = vec![app.ws("/ws/g").await, app.ws("/ws/g").await];
    let mut subscribed = app.ws("/ws").await;
    subscribed.subscribe("g").await;
    members.push(subscribed);
    let mut outsider = app.ws("/ws/other").await;

    let res = app
        .close_group("g", json!({"code": 4321, "reason": "maintenance"}))
        .await;

    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"closed": 3}));
    for member in &mut members {
        assert_eq!(
            member.read_until_close().await,
            (vec![], 4321, "maintenance".to_owned())
        );
    }
    assert_eq!(app.group("g").await["subscribers"], 0);
    app.notify_ok("other", "e", json!("still open")).await;
    assert_eq!(outsider.recv_json().await["data"], "still open");
}

#[tokio::test]
async fn notifications_sent_before_the_close_arrive_before_the_close_frame() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;

    for n in 1..=3 {
        app.notify_ok("g", "e", json!({"n": n})).await;
    }
    close_ok(&app, "g", json!({"code": 4321, "reason": "maintenance"}), 1).await;

    let (frames, code, reason) = member.read_until_close().await;
    let got: Vec<(Value, Value)> = frames
        .iter()
        .map(|f| (f["offset"].clone(), f["data"]["n"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!(1), json!(1)),
            (json!(2), json!(2)),
            (json!(3), json!(3))
        ]
    );
    assert_eq!((code, reason.as_str()), (4321, "maintenance"));
}

#[tokio::test]
async fn close_codes_outside_1000_and_3000_to_4999_are_refused_and_nobody_is_closed() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;

    for code in [1234u64, 5000, 999, 1001, 0, 2999, 70000, 4_294_967_296] {
        let res = app
            .close_group("g", json!({"code": code, "reason": "nope"}))
            .await;
        let message = assert_error(res, 400, "invalid_close_code", &format!("code {code}")).await;
        assert!(message.contains("3000-4999"), "code {code}: {message}");
        // The code as sent, never a narrowed one (4294967296 is not 4294967295).
        assert!(
            message.contains(&format!("close code {code} ")),
            "{message}"
        );
    }

    assert_eq!(app.group("g").await["subscribers"], 1);
    app.notify_ok("g", "e", json!("still open")).await;
    assert_eq!(member.recv_json().await["data"], "still open");
}

#[tokio::test]
async fn a_close_reason_over_123_bytes_is_refused() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;

    for (what, reason) in [
        ("124 ASCII bytes", "r".repeat(124)),
        ("62 two-byte characters", "é".repeat(62)),
    ] {
        let res = app
            .close_group("g", json!({"code": 4000, "reason": reason}))
            .await;
        assert_error(res, 400, "invalid_close_reason", what).await;
    }

    app.notify_ok("g", "e", json!("still open")).await;
    assert_eq!(member.recv_json().await["data"], "still open");
}

#[tokio::test]
async fn a_close_reason_of_exactly_123_bytes_reaches_the_members() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;
    let reason = format!("{}{}", "é".repeat(60), "abc");
    assert_eq!(reason.len(), 123);

    close_ok(&app, "g", json!({"code": 4000, "reason": reason}), 1).await;

    assert_eq!(member.expect_close().await, (4000, reason));
}

#[tokio::test]
async fn without_a_code_members_are_closed_with_1000() {
    let app = spawn_app().await;
    let mut quiet = app.ws("/ws/quiet").await;
    let mut polite = app.ws("/ws/polite").await;

    close_ok(&app, "quiet", json!({}), 1).await;
    close_ok(&app, "polite", json!({"reason": "bye"}), 1).await;

    assert_eq!(quiet.expect_close().await, (1000, String::new()));
    assert_eq!(polite.expect_close().await, (1000, "bye".to_owned()));
}

#[tokio::test]
async fn closing_a_group_without_members_closes_nobody() {
    let app = spawn_app().await;
    let mut bystander = app.ws("/ws/other").await;

    close_ok(&app, "empty", json!({"code": 4000}), 0).await;

    app.notify_ok("other", "e", json!(1)).await;
    assert_eq!(bystander.recv_json().await["offset"], 1);
}

#[tokio::test]
async fn a_connection_closed_through_one_group_leaves_its_other_groups_too() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/g").await;
    member.subscribe("also").await;
    assert_eq!(app.group("also").await["subscribers"], 1);

    close_ok(&app, "g", json!({"code": 4000, "reason": "gone"}), 1).await;

    assert_eq!(member.expect_close().await, (4000, "gone".to_owned()));
    app.wait_for_subscribers("also", 0).await;
}
