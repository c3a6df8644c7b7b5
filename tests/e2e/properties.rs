//! Property tests over everything a client controls: client frames, `POST /notify` and
//! close bodies, group/event/user names, bearer tokens. Whatever arrives, herald never
//! panics and answers with a documented error (or a success).

use std::sync::OnceLock;

use futures_util::{SinkExt, StreamExt};
use herald::auth::{bearer, Verifier};
use herald::protocol::close::{application_close, MAX_REASON_BYTES};
use herald::protocol::{ClientFrame, EventName, GroupName, UserId};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, test_config, TestApp, WAIT};

/// The `error` codes openapi.yaml documents for a `400` on the API.
const API_400: &[&str] = &[
    "invalid_json",
    "invalid_request",
    "invalid_group",
    "invalid_event",
    "invalid_user",
    "invalid_close_code",
    "invalid_close_reason",
];

/// The `error` codes of error frames (README "WebSocket protocol").
const FRAME_ERRORS: &[&str] = &[
    "invalid_json",
    "unknown_type",
    "invalid_frame",
    "invalid_group",
    "invalid_event",
    "too_many_subscriptions",
    "not_subscribed",
    "publish_disabled",
    "forbidden",
    "invalid_token",
    "auth_disabled",
    "unavailable",
];

/// Names herald accepts, by the rule as documented.
fn documented_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

/// Strings near the name rule: mostly legal characters, sometimes not, sometimes long.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_.:-]{0,120}",
        "[A-Za-z0-9_.:/ %\\-]{0,20}",
        any::<String>(),
    ]
}

/// JSON values shaped like what clients send, with the field names herald reads.
fn json_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        name_like().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            Just("type".to_owned()),
            Just("group".to_owned()),
            Just("groups".to_owned()),
            Just("event".to_owned()),
            Just("data".to_owned()),
            Just("users".to_owned()),
            Just("token".to_owned()),
            Just("code".to_owned()),
            Just("reason".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A frame's or body's text: JSON-shaped most of the time, arbitrary otherwise.
fn text_like() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => json_like().prop_map(|v| v.to_string()),
        1 => any::<String>(),
    ]
}

proptest! {
    #[test]
    fn names_are_accepted_exactly_when_the_documented_rule_holds(raw in name_like()) {
        prop_assert_eq!(GroupName::parse(&raw).is_ok(), documented_name(&raw));
        prop_assert_eq!(EventName::parse(&raw).is_ok(), documented_name(&raw));
        let user_ok = (1..=256).contains(&raw.len()) && !raw.chars().any(char::is_control);
        prop_assert_eq!(UserId::parse(&raw).is_ok(), user_ok);
    }

    #[test]
    fn client_frames_parse_or_name_a_documented_error(text in text_like()) {
        if let Err(e) = ClientFrame::parse(&text) {
            prop_assert!(FRAME_ERRORS.contains(&e.code()), "{}", e.code());
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn close_requests_are_valid_exactly_for_1000_or_3000_to_4999_and_short_reasons(
        code in prop_oneof![0u64..6000, any::<u64>()],
        reason in any::<String>(),
    ) {
        let valid = (code == 1000 || (3000..=4999).contains(&code))
            && reason.len() <= MAX_REASON_BYTES;
        prop_assert_eq!(application_close(code, &reason).is_ok(), valid);
    }

    #[test]
    fn bearer_tokens_from_anywhere_never_verify_unless_signed(
        token in prop_oneof![
            any::<String>(),
            "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,40}",
        ],
        header in any::<String>(),
    ) {
        let verifier = verifier();
        prop_assert!(verifier.verify(&token).is_err());
        if let Some(found) = bearer::from_authorization(&header) {
            prop_assert!(!found.is_empty());
            prop_assert!(verifier.verify(found).is_err());
        }
        if let Ok(Some((protocol, found))) = bearer::from_protocols(&header) {
            prop_assert!(protocol.ends_with(found) && !found.is_empty());
        }
        let _ = bearer::from_query(&header);
    }
}

/// One verifier for the token properties (HS256 with a fixed secret).
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        Verifier::from_config(&test_config(&["--jwt-secret", "property-secret"]))
            .expect("key")
            .expect("auth on")
    })
}

/// One herald (and the runtime it runs on) shared by every case of a live property.
fn live() -> &'static (Runtime, TestApp) {
    static LIVE: OnceLock<(Runtime, TestApp)> = OnceLock::new();
    LIVE.get_or_init(|| {
        let rt = Runtime::new().expect("runtime");
        let app = rt.block_on(spawn_app());
        (rt, app)
    })
}

/// Asserts `res` is a documented `400` (or a success with `ok`) with the JSON error body.
async fn assert_documented(res: reqwest::Response, ok: u16) -> Result<(), TestCaseError> {
    let status = res.status().as_u16();
    let body: Value = res
        .json()
        .await
        .map_err(|e| TestCaseError::fail(format!("{status}: not JSON: {e}")))?;
    if status == ok {
        return Ok(());
    }
    prop_assert_eq!(status, 400, "{}", body);
    let code = body["error"].as_str().unwrap_or_default();
    prop_assert!(API_400.contains(&code), "{}", body);
    prop_assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        body
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn notify_bodies_get_202_or_a_documented_400(body in text_like()) {
        let (rt, app) = live();
        rt.block_on(async {
            let res = app
                .http
                .post(app.url("/notify"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("herald answers");
            assert_documented(res, 202).await
        })?;
    }

    #[test]
    fn close_bodies_get_200_or_a_documented_400(
        body in text_like(),
        // Empty would be another path (`/groups//close`), and HTTP clients resolve the
        // dot segments `.` and `..` away (RFC 3986 §5.2.4) before the request is sent.
        group in name_like().prop_filter("a path segment", |g| !matches!(g.as_str(), "" | "." | "..")),
    ) {
        let (rt, app) = live();
        rt.block_on(async {
            let path = format!("/groups/{}/close", urlencode(&group));
            let res = app
                .http
                .post(app.url(&path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("herald answers");
            assert_documented(res, 200).await
        })?;
    }

    #[test]
    fn any_text_frames_get_replies_of_documented_types_and_the_socket_stays_open(
        frames in prop::collection::vec(text_like(), 1..8),
    ) {
        let (rt, app) = live();
        rt.block_on(async {
            let mut ws = app.ws("/ws").await;
            for text in &frames {
                ws.0.send(Message::text(text.clone())).await.expect("send");
            }
            // A ping after them: every reply before its pong must be documented.
            ws.0.send(Message::text(r#"{"type":"ping"}"#)).await.expect("send");
            loop {
                let msg = tokio::time::timeout(WAIT, ws.0.next())
                    .await
                    .map_err(|_| TestCaseError::fail("no pong"))?;
                let Some(Ok(Message::Text(t))) = msg else {
                    return Err(TestCaseError::fail(format!("socket ended: {msg:?}")));
                };
                let reply: Value = serde_json::from_str(&t).expect("JSON frame");
                match reply["type"].as_str() {
                    Some("pong") => break,
                    Some("subscribed" | "unsubscribed" | "refreshed") => {}
                    Some("error") => {
                        let code = reply["error"].as_str().unwrap_or_default();
                        prop_assert!(FRAME_ERRORS.contains(&code), "{}", reply);
                    }
                    _ => return Err(TestCaseError::fail(format!("undocumented frame {reply}"))),
                }
            }
            Ok(())
        })?;
    }
}

/// Percent-encodes everything but unreserved characters, and dots (so `.` and `..` stay
/// names, not path segments a client would remove), as openapi.yaml advises.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_~:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
