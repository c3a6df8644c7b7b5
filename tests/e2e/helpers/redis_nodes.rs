//! herald nodes on a real Redis (see `crate::redis_server` for starting one).

use std::time::Duration;

use herald::Config;

use super::{eventually, spawn_app_with, TestApp};

/// A herald node on the Redis at `url` (a `redis://` URL, or a Cluster's list), ready
/// to serve.
pub async fn redis_node(url: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    let url = url.to_owned();
    let app = spawn_app_with(|c| {
        c.redis_url = Some(url.into());
        c.redis_node_ttl = Duration::from_secs(3);
        configure(c);
    })
    .await;
    wait_ready(&app, true).await;
    app
}

/// Two herald nodes on the Redis at `url`, both set up by `configure`: the shape of
/// every cross-node test.
pub async fn two_nodes(url: &str, configure: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    (
        redis_node(url, &configure).await,
        redis_node(url, &configure).await,
    )
}

/// Waits until `/readyz` answers 200 (`ready`) or 503.
pub async fn wait_ready(app: &TestApp, ready: bool) {
    let want = if ready { 200 } else { 503 };
    eventually(|| async {
        let status = app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status();
        if status == want {
            Ok(())
        } else {
            Err(format!("/readyz is {status}, never became {want}"))
        }
    })
    .await
}
