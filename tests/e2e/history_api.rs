//! `GET /groups/{group}/history`: the kept notify frames for backends, its auth and its
//! limits.

use serde_json::{json, Value};

use crate::helpers::{mint_token, now, spawn_auth_app, user_token, TestApp};

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = app.http.get(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn history_lists_the_kept_notify_frames_after_since() {
    let app = spawn_auth_app(|c| c.history_size = 5).await;
    let backend = app.bearer.clone();
    let backend = backend.as_deref();
    let mut member = app.ws_as("/ws/h", &user_token("ana", &["h"])).await;
    for i in 1..=7 {
        app.notify_ok("h", "tick", json!({"i": i})).await;
    }
    let live: Vec<Value> = {
        let mut frames = Vec::new();
        for _ in 0..7 {
            frames.push(member.recv_json().await);
        }
        frames
    };
    let epoch = live[0]["epoch"].clone();

    let (status, body) = get(&app, "/groups/h/history", backend).await;
    assert_eq!(status, 200, "{body}");
    // Only the latest 5 are kept; they are the frames members got, oldest first.
    assert_eq!(
        body,
        json!({"group":"h","epoch":epoch,"offset":7,"notifications":live[2..]})
    );
    let (_, body) = get(&app, "/groups/h/history?since=5&limit=1", backend).await;
    assert_eq!(body["notifications"], json!([live[5]]));
    let (_, body) = get(&app, "/groups/h/history?since=7", backend).await;
    assert_eq!(
        (&body["offset"], &body["notifications"]),
        (&json!(7), &json!([]))
    );

    // A group nothing was sent to: offset 0, nothing kept, still an epoch.
    let (status, body) = get(&app, "/groups/quiet/history", backend).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["offset"], &body["notifications"]),
        (&json!(0), &json!([]))
    );
    assert!(body["epoch"].is_string());
}

#[tokio::test]
async fn history_needs_the_notify_scope_and_checks_its_query() {
    let app = spawn_auth_app(|_| {}).await;
    let backend = app.bearer.clone();
    let backend = backend.as_deref();
    let (status, body) = get(&app, "/groups/h/history", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let member = user_token("ana", &["h"]);
    let (status, body) = get(&app, "/groups/h/history", Some(&member)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let expired = mint_token(json!({"sub":"backend","exp": now() - 60,"scope":"notify"}));
    assert_eq!(get(&app, "/groups/h/history", Some(&expired)).await.0, 401);

    for (query, error) in [
        ("limit=0", "invalid_query"),
        ("limit=1001", "invalid_query"),
        ("since=-1", "invalid_query"),
        ("since=abc", "invalid_query"),
        ("since=1.5", "invalid_query"),
        ("from=3", "invalid_query"),
    ] {
        let (status, body) = get(&app, &format!("/groups/h/history?{query}"), backend).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{query}: {body}"
        );
        assert!(body["message"].is_string());
    }
    let (status, body) = get(&app, "/groups/bad%20name/history", backend).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_group"))
    );
    assert_eq!(
        get(&app, "/groups/h/history?limit=1000", backend).await.0,
        200
    );

    let res = app
        .request(reqwest::Method::POST, "/groups/h/history")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET");
}
