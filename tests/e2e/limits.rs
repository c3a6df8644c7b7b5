//! `--max-connections`: past the limit upgrades get 503, the connections already open
//! are unaffected, and a freed slot admits the next client.

use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app_with, TestApp, Ws};

/// One upgrade attempt on `path`: the open socket, or the HTTP status and body it was
/// refused with.
async fn try_connect(app: &TestApp, path: &str) -> Result<Ws, (u16, Option<Value>)> {
    app.try_ws(path, &[])
        .await
        .map(|(ws, _)| ws)
        .map_err(|r| (r.status, r.body))
}

#[tokio::test]
async fn past_max_connections_an_upgrade_gets_503_and_open_connections_are_unaffected() {
    let app = spawn_app_with(|c| c.max_connections = 3).await;
    let mut open = Vec::new();
    for path in ["/ws/g", "/ws/g", "/ws"] {
        open.push(app.ws(path).await);
    }
    open[2].subscribe("g").await;

    for path in ["/ws/g", "/ws"] {
        let refused = try_connect(&app, path).await;

        let Err((status, body)) = refused else {
            panic!("{path}: a fourth connection was admitted");
        };
        assert_eq!(status, 503, "{path}");
        if let Some(body) = body {
            assert_eq!(body["error"], "too_many_connections", "{path}: {body}");
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{path}: {body}"
            );
        }
    }

    assert_eq!(
        app.group("g").await["subscribers"],
        3,
        "a refused upgrade never joins its group"
    );
    let reply = app.notify_ok("g", "e", json!("for the three")).await;
    assert_eq!(reply["recipients"], 3);
    for ws in &mut open {
        assert_eq!(ws.recv_json().await["data"], "for the three");
    }
}

#[tokio::test]
async fn after_a_connection_closes_a_new_one_is_admitted() {
    let app = spawn_app_with(|c| c.max_connections = 3).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(app.ws("/ws/g").await);
    }
    assert!(try_connect(&app, "/ws/g").await.is_err(), "the hub is full");

    let mut leaving = open.pop().unwrap();
    leaving.0.close(None).await.unwrap();

    // The slot comes back once the server has finished with the closed connection,
    // which happens asynchronously: retry for a bounded time.
    let mut newcomer = eventually(|| async {
        match try_connect(&app, "/ws/g").await {
            Ok(ws) => Ok(ws),
            Err((503, _)) => Err("the closed connection's slot never came back".to_owned()),
            Err((status, body)) => panic!("unexpected refusal {status}: {body:?}"),
        }
    })
    .await;

    let reply = app.notify_ok("g", "e", json!("welcome")).await;
    assert_eq!(reply["recipients"], 3);
    assert_eq!(newcomer.recv_json().await["data"], "welcome");
    for ws in &mut open {
        assert_eq!(ws.recv_json().await["data"], "welcome");
    }
    assert!(
        try_connect(&app, "/ws/g").await.is_err(),
        "the hub is full again"
    );
}
