//! Bad input never breaks the server: every refused HTTP request gets the documented
//! status and a `{"error","message"}` body, every refused frame an `error` frame (or the
//! documented close code), and everyone else keeps being served throughout.

use futures_util::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{assert_error_body, post_chunked, spawn_app, spawn_app_with, TestApp, Ws};

/// Default `--max-body`.
const MAX_BODY: usize = 64 * 1024;

/// One refused HTTP request and the error it must get.
struct BadRequest {
    what: &'static str,
    method: Method,
    path: String,
    /// `(content type, body)`; the content type is left out when `None`.
    body: Option<(Option<&'static str>, String)>,
    status: u16,
    error: &'static str,
}

impl BadRequest {
    fn new(what: &'static str, method: Method, path: &str) -> Self {
        Self {
            what,
            method,
            path: path.to_owned(),
            body: None,
            status: 0,
            error: "",
        }
    }

    fn get(what: &'static str, path: &str) -> Self {
        Self::new(what, Method::GET, path)
    }

    /// A POST whose body is sent as `application/json`.
    fn post_json(what: &'static str, path: &str, body: impl ToString) -> Self {
        Self::post(what, path, Some("application/json"), body)
    }

    fn post(
        what: &'static str,
        path: &str,
        content_type: Option<&'static str>,
        body: impl ToString,
    ) -> Self {
        let mut req = Self::new(what, Method::POST, path);
        req.body = Some((content_type, body.to_string()));
        req
    }

    fn expect(mut self, status: u16, error: &'static str) -> Self {
        self.status = status;
        self.error = error;
        self
    }
}

/// A notify body of exactly `len` bytes of valid JSON, padded inside `data`.
fn padded_notify(len: usize) -> String {
    let (head, tail) = (r#"{"group":"g","data":""#, r#""}"#);
    let body = format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()));
    assert_eq!(body.len(), len);
    body
}

/// A client in group `bystander` that nobody's bad input must disturb.
async fn bystander(app: &TestApp) -> Ws {
    app.ws("/ws/bystander").await
}

/// The bystander still gets a notification: the server keeps serving everyone else.
async fn assert_bystander_still_served(app: &TestApp, bystander: &mut Ws) {
    let reply = app
        .notify_ok("bystander", "still.here", json!({"ok": true}))
        .await;
    assert_eq!(reply["recipients"], 1);
    let frame = bystander.recv_json().await;
    let epoch = &frame["epoch"];
    assert!(epoch.as_str().is_some_and(|e| !e.is_empty()), "{frame}");
    assert_eq!(
        frame,
        json!({"type":"notify","group":"bystander","event":"still.here","offset":1,"epoch":epoch,"data":{"ok":true}})
    );
}

#[tokio::test]
async fn every_bad_http_request_gets_its_status_and_a_json_error_while_others_are_served() {
    let app = spawn_app().await;
    let mut bystander = bystander(&app).await;
    let long_name = "x".repeat(101);
    let cases = [
        BadRequest::post_json("body that is not JSON", "/notify", r#"{"group":"#)
            .expect(400, "invalid_json"),
        BadRequest::post_json("notify without data", "/notify", json!({"group": "g"}))
            .expect(400, "invalid_request"),
        BadRequest::post_json(
            "notify with an unknown field",
            "/notify",
            json!({"group": "g", "data": 1, "colour": "red"}),
        )
        .expect(400, "invalid_request"),
        BadRequest::post_json(
            "group name with a space",
            "/notify",
            json!({"group": "a b", "data": 1}),
        )
        .expect(400, "invalid_group"),
        BadRequest::post_json(
            "group name of 101 characters",
            "/notify",
            json!({"group": long_name, "data": 1}),
        )
        .expect(400, "invalid_group"),
        BadRequest::post_json(
            "bad name inside groups",
            "/notify",
            json!({"groups": ["ok", "a/b"], "data": 1}),
        )
        .expect(400, "invalid_group"),
        BadRequest::post_json(
            "event name with a space",
            "/notify",
            json!({"group": "g", "event": "no way", "data": 1}),
        )
        .expect(400, "invalid_event"),
        BadRequest::post_json(
            "both group and groups",
            "/notify",
            json!({"group": "g", "groups": ["h"], "data": 1}),
        )
        .expect(400, "invalid_request"),
        BadRequest::post(
            "text/plain body",
            "/notify",
            Some("text/plain"),
            json!({"group": "g", "data": 1}),
        )
        .expect(415, "unsupported_media_type"),
        BadRequest::post(
            "body without a content type",
            "/notify",
            None,
            json!({"group": "g", "data": 1}),
        )
        .expect(415, "unsupported_media_type"),
        BadRequest::post_json("65 KiB body", "/notify", padded_notify(65 * 1024))
            .expect(413, "payload_too_large"),
        BadRequest::post_json("group close with bad JSON", "/groups/g/close", "nope")
            .expect(400, "invalid_json"),
        BadRequest::post_json(
            "group close of a bad group name",
            "/groups/a%20b/close",
            json!({"code": 4000}),
        )
        .expect(400, "invalid_group"),
        BadRequest::get("unknown route", "/nope").expect(404, "not_found"),
        BadRequest::get("GET on /notify", "/notify").expect(405, "method_not_allowed"),
        BadRequest::new("DELETE on a group", Method::DELETE, "/groups/x")
            .expect(405, "method_not_allowed"),
        BadRequest::get("group info for a bad name", "/groups/a%20b").expect(400, "invalid_group"),
        BadRequest::get("list limit of 0", "/groups?limit=0").expect(400, "invalid_query"),
        BadRequest::get("list limit that is not a number", "/groups?limit=abc")
            .expect(400, "invalid_query"),
        BadRequest::get("plain GET on /ws with a bad group", "/ws/bad%20name")
            .expect(400, "invalid_group"),
        BadRequest::get("plain GET on /ws", "/ws").expect(426, "upgrade_required"),
        BadRequest::get("plain GET on /ws/{group}", "/ws/g").expect(426, "upgrade_required"),
    ];

    for case in cases {
        let mut req = app.http.request(case.method.clone(), app.url(&case.path));
        if let Some((content_type, body)) = case.body {
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req = req.body(body);
        }
        let res = req.send().await.unwrap();

        assert_eq!(res.status(), case.status, "{}", case.what);
        let content_type = res.headers().get("content-type").cloned();
        assert_eq!(
            content_type.as_ref().and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            case.what
        );
        let body: Value = res.json().await.unwrap();
        assert_error_body(&body, case.error, case.what);
    }

    assert_bystander_still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn a_body_of_exactly_max_body_bytes_is_accepted() {
    let app = spawn_app().await;

    let res = app
        .http
        .post(app.url("/notify"))
        .header("content-type", "application/json")
        .body(padded_notify(MAX_BODY))
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn bad_frames_get_an_error_frame_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let mut bystander = bystander(&app).await;
    let mut ws = app.ws("/ws").await;
    let long_name = "x".repeat(101);
    let cases = [
        ("text that is not JSON", "{nope".to_owned(), "invalid_json"),
        ("empty text", String::new(), "invalid_json"),
        (
            "unknown type",
            json!({"type": "dance"}).to_string(),
            "unknown_type",
        ),
        (
            "no type at all",
            json!({"group": "g"}).to_string(),
            "unknown_type",
        ),
        (
            "subscribe to a bad group",
            json!({"type": "subscribe", "group": "a b"}).to_string(),
            "invalid_group",
        ),
        (
            "subscribe to a 101-character group",
            json!({"type": "subscribe", "group": long_name}).to_string(),
            "invalid_group",
        ),
        (
            "subscribe without a group",
            json!({"type": "subscribe"}).to_string(),
            "invalid_frame",
        ),
        (
            "subscribe with a numeric group",
            json!({"type": "subscribe", "group": 7}).to_string(),
            "invalid_frame",
        ),
        (
            "unsubscribe from a bad group",
            json!({"type": "unsubscribe", "group": "a/b"}).to_string(),
            "invalid_group",
        ),
    ];

    for (what, text, code) in cases {
        ws.0.send(Message::text(text)).await.unwrap();
        let frame = ws.recv_json().await;

        let obj = frame.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["error", "message", "type"], "{what}: {frame}");
        assert_eq!(frame["type"], "error", "{what}: {frame}");
        assert_eq!(frame["error"], code, "{what}: {frame}");
        assert!(
            frame["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {frame}"
        );

        ws.send_json(json!({"type": "ping"})).await;
        assert_eq!(
            ws.recv_json().await,
            json!({"type": "pong"}),
            "{what}: the connection stays usable"
        );
    }

    // The connection that misbehaved is still a full member: it can join and be notified.
    ws.subscribe("after").await;
    app.notify_ok("after", "e", json!("still listening")).await;
    assert_eq!(ws.recv_json().await["data"], "still listening");
    assert_bystander_still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn a_binary_frame_closes_the_connection_with_1003() {
    let app = spawn_app().await;
    let mut bystander = bystander(&app).await;
    let mut ws = app.ws("/ws/g").await;

    ws.0.send(Message::binary(vec![0x7b, 0x7d])).await.unwrap();

    let (frames, code, reason) = ws.read_until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!((code, reason.as_str()), (1003, "binary_frame"));
    app.wait_for_subscribers("g", 0).await;
    assert_bystander_still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn a_frame_within_max_frame_is_read_normally() {
    let app = spawn_app_with(|c| c.max_frame = 1024).await;
    let mut ws = app.ws("/ws").await;
    // JSON may carry any amount of whitespace: a subscribe frame of 1000 bytes.
    let mut text = json!({"type": "subscribe", "group": "g"}).to_string();
    text.push_str(&" ".repeat(1000 - text.len()));

    ws.0.send(Message::text(text)).await.unwrap();

    let reply = ws.recv_json().await;
    assert_eq!(
        reply,
        json!({"type": "subscribed", "group": "g", "offset": 0, "epoch": reply["epoch"]})
    );
    assert!(reply["epoch"].is_string());
}

#[tokio::test]
async fn a_frame_over_max_frame_closes_the_connection_with_1009() {
    let app = spawn_app_with(|c| c.max_frame = 1024).await;
    let mut bystander = bystander(&app).await;
    let mut ws = app.ws("/ws/g").await;
    let mut text = json!({"type": "subscribe", "group": "g"}).to_string();
    text.push_str(&" ".repeat(2000 - text.len()));

    ws.0.send(Message::text(text)).await.unwrap();

    let (frames, code, reason) = ws.read_until_close().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!((code, reason.as_str()), (1009, "frame_too_large"));
    app.wait_for_subscribers("g", 0).await;
    assert_bystander_still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn chunked_bodies_are_held_to_max_body_too() {
    let app = spawn_app().await;
    let mut bystander = bystander(&app).await;

    let (small_status, _) = post_chunked(app.addr, "/notify", &padded_notify(4 * 1024)).await;
    let (big_status, big_body) =
        post_chunked(app.addr, "/notify", &padded_notify(MAX_BODY + 4 * 1024)).await;

    assert_eq!(small_status, 202, "a small chunked body is read normally");
    assert_eq!(big_status, 413);
    assert_error_body(
        &big_body,
        "payload_too_large",
        "chunked body over the limit",
    );
    assert_bystander_still_served(&app, &mut bystander).await;
}

#[tokio::test]
async fn a_wrong_method_names_the_allowed_one_in_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/notify", "POST"),
        (reqwest::Method::DELETE, "/groups/x", "GET"),
        (reqwest::Method::PUT, "/groups/x/close", "POST"),
        (reqwest::Method::GET, "/users/u/close", "POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::POST, "/herald.js", "GET"),
        (reqwest::Method::DELETE, "/", "GET"),
        (reqwest::Method::POST, "/ws/g", "GET"),
    ] {
        let res = app
            .http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed");
    }
}

#[tokio::test]
async fn a_json_array_is_not_a_request_object() {
    let app = spawn_app().await;
    let mut member = app.ws("/ws/a").await;
    for (path, body) in [
        ("/notify", json!(["a", null, null, 1])),
        ("/groups/a/close", json!([4000, "bye"])),
    ] {
        let res = app.post_json(path, &body).await;
        assert_eq!(res.status(), 400, "{path}");
        let err: serde_json::Value = res.json().await.unwrap();
        assert_eq!(err["error"], "invalid_request", "{path}");
    }
    // Nothing was published or closed.
    app.notify_ok("a", "e", json!(1)).await;
    assert_eq!(member.recv_json().await["offset"], 1);
}

#[tokio::test]
async fn an_upgrade_whose_key_is_not_base64_of_16_bytes_gets_426() {
    let app = spawn_app().await;
    let upgrade = |key: &'static str| {
        app.http
            .get(app.url("/ws/g"))
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", key)
            .send()
    };
    // 24 characters, but 18 bytes; then 16 bytes with stray low bits; then not base64.
    for key in [
        "AAAAAAAAAAAAAAAAAAAAAAAA",
        "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25j!Q==",
    ] {
        let res = upgrade(key).await.unwrap();
        assert_eq!(res.status(), 426, "{key}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "upgrade_required", "{key}");
    }
    // RFC 6455's own example key upgrades.
    let res = upgrade("dGhlIHNhbXBsZSBub25jZQ==").await.unwrap();
    assert_eq!(res.status(), 101);
}
