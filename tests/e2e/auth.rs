//! Authentication and targeting with real tokens minted here: algorithms and keys, the
//! refusals (expired, not yet valid, bad signature, aud/iss, `alg: none`, algorithm
//! confusion), the three token transports, group and publish patterns, personal groups,
//! `users` targeting, user close, expiry with 4102 and refresh, origins, backend scope.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use crate::helpers::{
    fixture, mint_token, mint_with, now, spawn_app_with, spawn_auth_app, user_token, TestApp, Ws,
};

/// Asserts an upgrade of `path` with `headers` is refused with `status` and `error`.
async fn assert_refused(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    error: &str,
) {
    let refused = app
        .try_ws(path, headers)
        .await
        .err()
        .unwrap_or_else(|| panic!("{path} {headers:?} was upgraded"));
    assert_eq!(refused.status, status, "{path}: {refused:?}");
    let body = refused.body.expect("an error body");
    assert_eq!(body["error"], error, "{path}: {body}");
    if status == 401 {
        let challenge = refused.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Connects to `/ws/probe` with `token` and expects a 401.
async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    let auth = bearer(token);
    let refused = app.try_ws("/ws/probe", &[("authorization", &auth)]).await;
    let refused = refused.err().unwrap_or_else(|| panic!("{what}: upgraded"));
    assert_eq!(refused.status, 401, "{what}: {refused:?}");
    assert_eq!(refused.body.unwrap()["error"], "unauthorized", "{what}");
}

/// Sends a notification to `group` and asserts `ws` receives it.
async fn assert_reaches(app: &TestApp, ws: &mut Ws, group: &str) {
    let reply = app.notify_ok(group, "e", json!("ping")).await;
    let frame = ws.recv_json().await;
    assert_eq!(
        (&frame["group"], &frame["offset"]),
        (&json!(group), &reply["offset"])
    );
}

#[tokio::test]
async fn a_missing_token_gets_401_and_a_valid_hs256_token_in_the_header_connects() {
    let app = spawn_auth_app(|_| {}).await;

    assert_refused(&app, "/ws/room:1", &[], 401, "unauthorized").await;
    assert_refused(&app, "/ws", &[], 401, "unauthorized").await;
    let mut ws = app
        .ws_as("/ws/room:1", &user_token("42", &["room:*"]))
        .await;

    assert_reaches(&app, &mut ws, "room:1").await;
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_against_the_configured_public_key() {
    for (alg, private, public) in [
        (Algorithm::RS256, "rsa_private.pem", "rsa_public.pem"),
        (Algorithm::ES256, "ec_private.pem", "ec_public.pem"),
        (Algorithm::EdDSA, "ed_private.pem", "ed_public.pem"),
    ] {
        let mut app = spawn_app_with(|c| c.jwt_public_key_file = Some(fixture(public))).await;
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
            _ => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap();
        let claims = json!({"sub": "7", "exp": now() + 600, "groups": ["g"]});
        let backend = json!({"sub": "svc", "exp": now() + 600, "scope": "notify"});
        app.bearer = Some(mint_with(alg, &key, backend));

        let mut ws = app
            .ws_as("/ws/g", &mint_with(alg, &key, claims.clone()))
            .await;
        let mut other = app.ws_as("/ws", &mint_with(alg, &key, claims)).await;
        other.subscribe("g").await;

        app.notify_ok("g", "e", json!(1)).await;
        assert_eq!(ws.recv_json().await["data"], 1, "{alg:?}");
        assert_eq!(other.recv_json().await["data"], 1, "{alg:?}");
        assert_token_refused(
            &app,
            &user_token("7", &["g"]),
            &format!("HS256 on a {alg:?} hub"),
        )
        .await;
    }
}

#[tokio::test]
async fn expired_not_yet_valid_badly_signed_and_wrong_aud_or_iss_tokens_get_401() {
    let app = spawn_auth_app(|c| {
        c.jwt_issuer = Some("https://id.example.com".into());
        c.jwt_audience = Some("herald".into());
        c.jwt_leeway = Duration::ZERO;
    })
    .await;
    let good = json!({"sub": "1", "exp": now() + 600, "groups": ["probe"],
                      "iss": "https://id.example.com", "aud": "herald"});
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let without = |field: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(field);
        claims
    };
    let other_key = EncodingKey::from_secret(b"not-the-secret");

    app.ws_as("/ws/probe", &mint_token(good.clone())).await;
    for (what, token) in [
        ("expired", mint_token(with("exp", json!(now() - 10)))),
        (
            "not yet valid (nbf)",
            mint_token(with("nbf", json!(now() + 600))),
        ),
        (
            "wrong signature",
            mint_with(Algorithm::HS256, &other_key, good.clone()),
        ),
        ("wrong aud", mint_token(with("aud", json!("someone-else")))),
        (
            "wrong iss",
            mint_token(with("iss", json!("https://evil.example.com"))),
        ),
        ("no iss", mint_token(without("iss"))),
        ("no exp", mint_token(without("exp"))),
        ("no sub", mint_token(without("sub"))),
        (
            "HS512 on an HS256 hub",
            mint_with(
                Algorithm::HS512,
                &EncodingKey::from_secret(crate::helpers::SECRET.as_bytes()),
                good.clone(),
            ),
        ),
        ("garbage", "not-a-token".to_owned()),
    ] {
        assert_token_refused(&app, &token, what).await;
    }
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused_everywhere() {
    let app = spawn_auth_app(|_| {}).await;
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let forged = format!(
        "{}.{}.",
        part(json!({"alg": "none", "typ": "JWT"})),
        part(json!({"sub": "backend", "exp": now() + 600, "groups": ["*"], "scope": "notify"}))
    );

    assert_token_refused(&app, &forged, "alg none").await;
    let res = app
        .http
        .post(app.url("/notify"))
        .bearer_auth(&forged)
        .json(&json!({"group": "g", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_rsa_public_key_is_refused() {
    let public = fixture("rsa_public.pem");
    let app = spawn_app_with(|c| c.jwt_public_key_file = Some(public.clone())).await;
    // The classic confusion attack: the public key's PEM bytes used as the HMAC secret.
    let pem = std::fs::read(&public).unwrap();
    let forged = mint_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
        json!({"sub": "1", "exp": now() + 600, "groups": ["*"]}),
    );

    assert_token_refused(&app, &forged, "algorithm confusion").await;
}

#[tokio::test]
async fn the_token_may_come_in_the_query_or_the_subprotocol_which_the_101_echoes() {
    let app = spawn_auth_app(|_| {}).await;
    let token = user_token("5", &["g"]);

    let (mut by_query, _) = app
        .try_ws(&format!("/ws/g?token={token}"), &[])
        .await
        .unwrap();
    let offered = format!("herald.v1, herald.bearer.{token}");
    let (mut by_protocol, res) = app
        .try_ws("/ws/g", &[("sec-websocket-protocol", &offered)])
        .await
        .unwrap();

    assert_eq!(
        res.headers()["sec-websocket-protocol"].to_str().unwrap(),
        format!("herald.bearer.{token}")
    );
    app.notify_ok("g", "e", json!(1)).await;
    assert_eq!(by_query.recv_json().await["data"], 1);
    assert_eq!(by_protocol.recv_json().await["data"], 1);
    let auth = bearer(&token);
    assert_refused(
        &app,
        &format!("/ws/g?token={token}"),
        &[("authorization", &auth)],
        400,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn group_patterns_allow_and_deny_on_both_endpoints() {
    let app = spawn_auth_app(|_| {}).await;
    let token = user_token("9", &["room:*", "news"]);
    let auth = bearer(&token);

    app.ws_as("/ws/room:1", &token).await;
    app.ws_as("/ws/news", &token).await;
    assert_refused(
        &app,
        "/ws/sport",
        &[("authorization", &auth)],
        403,
        "forbidden",
    )
    .await;
    assert_eq!(app.group("sport").await["subscribers"], 0);

    let mut ws = app.ws_as("/ws", &token).await;
    ws.subscribe("room:2").await;
    ws.send_json(json!({"type": "subscribe", "group": "newsroom"}))
        .await;
    let err = ws.recv_json().await;
    assert_eq!(
        (&err["type"], &err["error"]),
        (&json!("error"), &json!("forbidden")),
        "{err}"
    );
    assert_eq!(app.group("newsroom").await["subscribers"], 0);
}

#[tokio::test]
async fn client_publish_is_scoped_by_the_publish_claim() {
    let app = spawn_auth_app(|c| c.client_publish = true).await;
    let token = mint_token(json!({"sub": "1", "exp": now() + 600,
                                  "groups": ["room:*"], "publish": ["room:1"]}));
    let mut ws = app.ws_as("/ws/room:1", &token).await;
    ws.subscribe("room:2").await;

    ws.send_json(json!({"type": "publish", "group": "room:2", "data": "no"}))
        .await;
    assert_eq!(ws.recv_json().await["error"], "forbidden");
    ws.send_json(json!({"type": "publish", "group": "room:1", "data": "yes"}))
        .await;
    let frame = ws.recv_json().await;
    assert_eq!(
        (&frame["group"], &frame["data"]),
        (&json!("room:1"), &json!("yes"))
    );
    assert_eq!(
        app.group("room:2").await["offset"],
        0,
        "nothing reached room:2"
    );
}

#[tokio::test]
async fn the_personal_group_reaches_every_connection_of_one_user_and_no_one_else() {
    let app = spawn_auth_app(|_| {}).await;
    let mut tab1 = app.ws_as("/ws", &user_token("42", &[])).await;
    let mut tab2 = app
        .ws_as("/ws/room:1", &user_token("42", &["room:1"]))
        .await;
    let mut other = app.ws_as("/ws", &user_token("43", &[])).await;

    let reply = app.notify_ok("user:42", "e", json!("for 42")).await;

    assert_eq!(reply["recipients"], 2);
    assert_eq!(tab1.recv_json().await["data"], "for 42");
    assert_eq!(tab2.recv_json().await["data"], "for 42");
    other.expect_silence(Duration::from_millis(200)).await;
    let view = app.group("user:42").await;
    assert_eq!(
        (&view["subscribers"], &view["users"]),
        (&json!(2), &json!(["42"]))
    );
}

#[tokio::test]
async fn users_targeting_reaches_only_the_listed_users_and_takes_an_offset() {
    let app = spawn_auth_app(|_| {}).await;
    let mut a = app.ws_as("/ws/room", &user_token("a", &["room"])).await;
    let mut b = app.ws_as("/ws/room", &user_token("b", &["room"])).await;
    let mut c = app.ws_as("/ws/room", &user_token("c", &["room"])).await;
    assert_eq!(app.group("room?limit=2").await["users"], json!(["a", "b"]));

    let res = app
        .notify(json!({"group": "room", "users": ["a", "c", "nobody"], "data": "secret"}))
        .await;
    assert_eq!(res.status(), 202);
    let reply: Value = res.json().await.unwrap();
    assert_eq!(
        (&reply["offset"], &reply["recipients"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(a.recv_json().await["data"], "secret");
    assert_eq!(c.recv_json().await["data"], "secret");

    app.notify_ok("room", "e", json!("all")).await;
    let seen_by_b = b.recv_json().await;
    assert_eq!(
        (&seen_by_b["offset"], &seen_by_b["data"]),
        (&json!(2), &json!("all")),
        "b sees a gap"
    );
}

#[tokio::test]
async fn user_close_closes_every_connection_of_that_user_only() {
    let app = spawn_auth_app(|_| {}).await;
    let mut tab1 = app.ws_as("/ws/a", &user_token("u1", &["a", "b"])).await;
    let mut tab2 = app.ws_as("/ws/b", &user_token("u1", &["a", "b"])).await;
    let mut bystander = app.ws_as("/ws/a", &user_token("u2", &["a"])).await;

    let res = app
        .post_json(
            "/users/u1/close",
            &json!({"code": 4403, "reason": "banned"}),
        )
        .await;

    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"closed": 2}));
    assert_eq!(tab1.expect_close().await, (4403, "banned".to_owned()));
    assert_eq!(tab2.expect_close().await, (4403, "banned".to_owned()));
    assert_reaches(&app, &mut bystander, "a").await;
    let bad = app
        .post_json("/users/u2/close", &json!({"code": 1234}))
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn an_expired_token_closes_the_connection_with_4102() {
    let app = spawn_auth_app(|c| c.jwt_leeway = Duration::ZERO).await;
    let token = mint_token(json!({"sub": "1", "exp": now() + 2, "groups": ["g"]}));
    let mut ws = app.ws_as("/ws/g", &token).await;

    assert_eq!(ws.expect_close().await, (4102, "token_expired".to_owned()));
    app.wait_for_subscribers("g", 0).await;
}

#[tokio::test]
async fn refresh_extends_a_connection_past_its_first_exp_and_replaces_its_rights() {
    let app = spawn_auth_app(|c| c.jwt_leeway = Duration::ZERO).await;
    let first = mint_token(json!({"sub": "1", "exp": now() + 2, "groups": ["a", "b"]}));
    let mut ws = app.ws_as("/ws/a", &first).await;
    ws.subscribe("b").await;

    let refresh = |token: String| json!({"type": "refresh", "token": token});
    ws.send_json(refresh("garbage".into())).await;
    assert_eq!(ws.recv_json().await["error"], "invalid_token");
    ws.send_json(refresh(user_token("2", &["a"]))).await;
    assert_eq!(ws.recv_json().await["error"], "forbidden", "another user");
    let exp = now() + 600;
    ws.send_json(refresh(mint_token(
        json!({"sub": "1", "exp": exp, "groups": ["a"]}),
    )))
    .await;
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "unsubscribed", "group": "b"})
    );
    assert_eq!(
        ws.recv_json().await,
        json!({"type": "refreshed", "exp": exp})
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_reaches(&app, &mut ws, "a").await;
    assert_eq!(app.group("b").await["subscribers"], 0);
}

#[tokio::test]
async fn origins_outside_allowed_origins_get_403_and_clients_without_origin_connect() {
    let app = spawn_app_with(|c| {
        c.allowed_origins = Some(vec!["https://*.example.com".parse().unwrap()]);
    })
    .await;

    let _browser = app
        .try_ws("/ws/g", &[("origin", "https://app.example.com")])
        .await
        .unwrap();
    let _backend = app.try_ws("/ws/g", &[]).await.unwrap();
    for origin in [
        "https://evil.io",
        "https://example.com.evil.io",
        "http://app.example.com",
    ] {
        assert_refused(&app, "/ws/g", &[("origin", origin)], 403, "forbidden").await;
    }
    assert_eq!(app.group("g").await["subscribers"], 2);
}

#[tokio::test]
async fn the_api_needs_a_backend_token_with_the_notify_scope() {
    let mut app = spawn_auth_app(|_| {}).await;
    let backend = app.bearer.take();
    let calls = [
        (
            reqwest::Method::POST,
            "/notify",
            Some(json!({"group": "g", "data": 1})),
        ),
        (
            reqwest::Method::POST,
            "/notify/batch",
            Some(json!({"notifications": [{"group": "g", "data": 1}]})),
        ),
        (reqwest::Method::POST, "/groups/g/close", Some(json!({}))),
        (reqwest::Method::POST, "/users/u/close", Some(json!({}))),
        (reqwest::Method::GET, "/groups", None),
        (reqwest::Method::GET, "/groups/g", None),
    ];
    let no_scope = mint_token(json!({"sub": "svc", "exp": now() + 600, "scope": "read"}));
    let user = user_token("1", &["*"]);

    for (token, status, error) in [
        (None, 401, "unauthorized"),
        (Some("garbage"), 401, "unauthorized"),
        (Some(no_scope.as_str()), 403, "forbidden"),
        (Some(user.as_str()), 403, "forbidden"),
    ] {
        app.bearer = token.map(str::to_owned);
        for (method, path, body) in &calls {
            let mut req = app.request(method.clone(), path);
            if let Some(body) = body {
                req = req.json(body);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), status, "{method} {path} with {token:?}");
            if status == 401 {
                let challenge = res.headers()["www-authenticate"].to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer realm=\"herald\""),
                    "{challenge}"
                );
            }
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], error, "{method} {path}: {body}");
        }
    }
    for open in ["/healthz", "/readyz"] {
        let res = app.http.get(app.url(open)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{open} needs no token");
    }
    app.bearer = backend;
    app.notify_ok("g", "e", json!(1)).await;
}

#[tokio::test]
async fn herald_refuses_to_start_with_a_private_key_or_a_mismatched_algorithm() {
    let private = crate::helpers::test_config(&[
        "--jwt-public-key-file",
        fixture("rsa_private.pem").to_str().unwrap(),
    ]);
    assert!(herald::Server::bind(private).is_err());
    let mismatch = crate::helpers::test_config(&[
        "--jwt-public-key-file",
        fixture("ec_public.pem").to_str().unwrap(),
        "--jwt-algorithm",
        "RS256",
    ]);
    assert!(herald::Server::bind(mismatch).is_err());
}

#[tokio::test]
async fn a_token_with_an_unknown_critical_header_extension_is_refused() {
    let app = spawn_auth_app(|_| {}).await;
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.crit = Some(vec!["urn:example:must-understand".into()]);
    let claims = json!({"sub": "7", "exp": now() + 600, "groups": ["probe"]});
    let key = EncodingKey::from_secret(crate::helpers::SECRET.as_bytes());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    assert_token_refused(&app, &token, "crit header").await;

    // The same claims without `crit` connect.
    app.ws_as("/ws/probe", &user_token("7", &["probe"])).await;
}

#[tokio::test]
async fn two_authorization_headers_or_two_bearer_subprotocols_are_a_400() {
    let app = spawn_auth_app(|_| {}).await;
    let a = bearer(&user_token("7", &["probe"]));
    let b = bearer(&user_token("8", &["probe"]));
    assert_refused(
        &app,
        "/ws/probe",
        &[("authorization", &a), ("authorization", &b)],
        400,
        "invalid_request",
    )
    .await;
    let offer = format!(
        "herald.bearer.{}, herald.bearer.{}",
        user_token("7", &["probe"]),
        user_token("8", &["probe"])
    );
    assert_refused(
        &app,
        "/ws/probe",
        &[("sec-websocket-protocol", &offer)],
        400,
        "invalid_request",
    )
    .await;
    // The same, offered in two header lines.
    let one = format!("herald.bearer.{}", user_token("7", &["probe"]));
    let two = format!("herald.bearer.{}", user_token("8", &["probe"]));
    assert_refused(
        &app,
        "/ws/probe",
        &[
            ("sec-websocket-protocol", &one),
            ("sec-websocket-protocol", &two),
        ],
        400,
        "invalid_request",
    )
    .await;

    let backend = app.bearer.clone().unwrap();
    let res = app
        .http
        .post(app.url("/notify"))
        .header("authorization", format!("Bearer {backend}"))
        .header("authorization", format!("Bearer {backend}"))
        .json(&json!({"group": "g", "data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    // One of each is fine.
    app.ws_as("/ws/probe", &user_token("7", &["probe"])).await;
}
