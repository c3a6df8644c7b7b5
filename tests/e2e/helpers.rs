//! `spawn_app()` and typed helpers shared by every e2e test.

mod raw_http;
mod redis_nodes;
mod ws;

pub use raw_http::post_chunked;
pub use redis_nodes::{redis_node, two_nodes, wait_ready};
pub use ws::Ws;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use herald::{Config, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response as Handshake;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Error as WsError;

/// How long a test waits for a frame it expects before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The HS256 secret of [`spawn_auth_app`] and [`mint_token`].
pub const SECRET: &str = "e2e-test-secret-that-signs-nothing-real";

/// A herald node running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The `--metrics-listen` address actually bound, when one was configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The `--api-listen` address actually bound, when one was configured.
    pub api_addr: Option<SocketAddr>,
    pub http: reqwest::Client,
    /// Sent as `Authorization: Bearer` by the HTTP helpers below, when set.
    pub bearer: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// An upgrade herald refused: status, JSON body (if any) and headers.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: HeaderMap,
}

/// Starts herald with default settings on a free port.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts herald on a free port after `configure` adjusted its settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&[]);
    configure(&mut config);
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addr().expect("local addr");
    let metrics_addr = server.metrics_addr();
    let api_addr = server.api_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        metrics_addr,
        api_addr,
        http: reqwest::Client::new(),
        bearer: None,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Starts herald with authentication on (HS256 with [`SECRET`]) after `configure`
/// adjusted its settings; its HTTP helpers carry a backend token with scope `notify`.
pub async fn spawn_auth_app(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut app = spawn_app_with(|c| {
        c.jwt_secret = Some(SECRET.to_owned().into());
        configure(c);
    })
    .await;
    app.bearer = Some(mint_token(
        json!({"sub": "backend", "exp": now() + 600, "scope": "notify"}),
    ));
    app
}

/// Seconds since the Unix epoch, as JWT claims count time.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// An HS256 token over `claims`, signed with [`SECRET`].
pub fn mint_token(claims: Value) -> String {
    mint_with(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

/// A token over `claims` signed with `key` using `alg`.
pub fn mint_with(alg: Algorithm, key: &EncodingKey, claims: Value) -> String {
    encode(&Header::new(alg), &claims, key).expect("sign test token")
}

/// A subscriber token for `sub`, valid for ten minutes, allowing `groups`.
pub fn user_token(sub: &str, groups: &[&str]) -> String {
    mint_token(json!({"sub": sub, "exp": now() + 600, "groups": groups}))
}

/// The path of a file under tests/fixtures.
pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A config as the binary would parse it from `args`, listening on a free port.
pub fn test_config(args: &[&str]) -> Config {
    use clap::Parser;
    let mut all = vec!["herald", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Config::try_parse_from(all).expect("test config")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Opens a WebSocket to `path` (`/ws` or `/ws/{group}`).
    pub async fn ws(&self, path: &str) -> Ws {
        let (stream, _) = connect_async(format!("ws://{}{}", self.addr, path))
            .await
            .expect("websocket connect");
        Ws(stream)
    }

    /// Tries an upgrade of `path` with extra request `headers`: the open socket and the
    /// 101 response, or how herald refused it. Any other failure fails the test.
    pub async fn try_ws(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(Ws, Handshake), Refused> {
        let mut req = format!("ws://{}{}", self.addr, path)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            req.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        match connect_async(req).await {
            Ok((stream, res)) => Ok((Ws(stream), res)),
            Err(WsError::Http(res)) => Err(Refused {
                status: res.status().as_u16(),
                body: res
                    .body()
                    .as_deref()
                    .filter(|b| !b.is_empty())
                    .map(|b| serde_json::from_slice(b).expect("refusal body is JSON")),
                headers: res.headers().clone(),
            }),
            Err(e) => panic!("upgrade failed with something other than an HTTP status: {e}"),
        }
    }

    /// Opens a WebSocket to `path` with `Authorization: Bearer <token>`.
    pub async fn ws_as(&self, path: &str, token: &str) -> Ws {
        let auth = format!("Bearer {token}");
        match self.try_ws(path, &[("authorization", &auth)]).await {
            Ok((ws, _)) => ws,
            Err(refused) => panic!("upgrade of {path} refused: {refused:?}"),
        }
    }

    /// An HTTP request to `path` carrying [`TestApp::bearer`], if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match &self.bearer {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// `POST /notify` with a JSON body.
    pub async fn notify(&self, body: Value) -> reqwest::Response {
        self.post_json("/notify", &body).await
    }

    /// `POST /notify` to one group; asserts 202 and returns the reply.
    pub async fn notify_ok(&self, group: &str, event: &str, data: Value) -> Value {
        let res = self
            .notify(json!({"group": group, "event": event, "data": data}))
            .await;
        assert_eq!(res.status(), 202, "notify should be accepted");
        res.json().await.unwrap()
    }

    /// `POST /groups/{group}/close`.
    pub async fn close_group(&self, group: &str, body: Value) -> reqwest::Response {
        self.post_json(&format!("/groups/{group}/close"), &body)
            .await
    }

    /// `GET path` (with [`TestApp::bearer`]), asserted 200; the JSON reply.
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// `GET /groups/{group}`, asserted 200.
    pub async fn group(&self, group: &str) -> Value {
        self.get_json(&format!("/groups/{group}")).await
    }

    /// One `GET /metrics` scrape, asserted 200 and Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let res = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain"), "{ct}");
        res.text().await.unwrap()
    }

    /// Waits until `group` has `n` local subscribers (sessions leave asynchronously).
    pub async fn wait_for_subscribers(&self, group: &str, n: u64) {
        eventually(move || async move {
            let subscribers = self.group(group).await["subscribers"].clone();
            if subscribers == n {
                Ok(())
            } else {
                Err(format!("{group} has {subscribers} subscribers, not {n}"))
            }
        })
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Triggers a graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs `check` every 20 ms until it returns `Ok`, for at most `limit`. For state that
/// settles a moment after what the test saw (a session leaving, a counter moving); `Err`
/// says what the last check found, for the failure message.
pub async fn poll_until<T, Fut>(
    limit: Duration,
    mut check: impl FnMut() -> Fut,
) -> Result<T, String>
where
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let why = match check().await {
            Ok(done) => return Ok(done),
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`poll_until`] for [`WAIT`], failing the test with the last check's finding.
pub async fn eventually<T, Fut>(check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    poll_until(WAIT, check)
        .await
        .unwrap_or_else(|why| panic!("still not so after {WAIT:?}: {why}"))
}

/// The value of an unlabelled (or fully spelled-out) `series` in a `/metrics` scrape;
/// 0 when absent, as Prometheus reads a counter that never moved.
pub fn series_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Asserts an error body is exactly `{"error": <code>, "message": <non-empty text>}`.
pub fn assert_error_body(body: &Value, code: &str, what: &str) {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error body is not an object: {body}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "message"], "{what}: {body}");
    assert_eq!(body["error"], code, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message should be non-empty text: {body}"
    );
}

/// Asserts `res` is `status` with the error body of `code` (see [`assert_error_body`]);
/// returns the message.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str, what: &str) -> String {
    assert_eq!(res.status(), status, "{what}");
    let body: Value = res.json().await.unwrap();
    assert_error_body(&body, code, what);
    body["message"].as_str().unwrap_or_default().to_owned()
}
