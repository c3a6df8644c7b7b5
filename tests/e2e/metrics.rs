//! `/metrics` after real traffic: counters and histograms move by exactly what was done,
//! the scrape is valid Prometheus text (promtool), every metric the Grafana dashboard
//! queries exists, request ids are echoed and `--metrics-listen` moves `/metrics`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use crate::helpers::{eventually, spawn_app, spawn_app_with, TestApp, Ws};
use crate::process::Herald;

/// One scrape: series (`name{label="v",...}`, labels sorted) to value.
struct Scrape(HashMap<String, f64>);

impl Scrape {
    /// Parses the Prometheus text format (enough of it for herald's output).
    fn parse(text: &str) -> Self {
        let mut series = HashMap::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("`series value` line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            series.insert(normalise(key), value);
        }
        Self(series)
    }

    /// The value of `series` (written with labels in any order); 0 when absent.
    fn get(&self, series: &str) -> f64 {
        self.0.get(&normalise(series)).copied().unwrap_or(0.0)
    }

    /// Metric names present (series names without labels).
    fn names(&self) -> BTreeSet<String> {
        self.0
            .keys()
            .map(|k| k.split('{').next().unwrap().to_owned())
            .collect()
    }
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}`.
fn normalise(key: &str) -> String {
    let Some((name, labels)) = key.split_once('{') else {
        return key.to_owned();
    };
    let labels = labels.trim_end_matches('}');
    let mut pairs: BTreeMap<&str, &str> = BTreeMap::new();
    // herald's label values never contain `,` or `"` escapes, so a plain split works.
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').expect("label=value");
        pairs.insert(k, v);
    }
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

async fn scrape(app: &TestApp) -> Scrape {
    Scrape::parse(&app.metrics_text().await)
}

/// Scrapes until `series` reaches `want` (sessions record as they finish writing or
/// closing, a moment after the client saw it), then returns that scrape.
async fn scrape_when(app: &TestApp, series: &str, want: f64) -> Scrape {
    eventually(move || async move {
        let s = scrape(app).await;
        match s.get(series) {
            got if got == want => Ok(s),
            got => Err(format!("{series} stayed at {got} (want {want})")),
        }
    })
    .await
}

const MEMBERS: usize = 3;
const NOTIFIES: usize = 5;

/// A node with room for [`MEMBERS`] connections in `metrics:room` plus one more.
async fn spawn_room_app() -> (TestApp, Vec<Ws>) {
    let app = spawn_app_with(|c| c.max_connections = MEMBERS as u32 + 1).await;
    let mut members = Vec::new();
    for _ in 0..MEMBERS {
        members.push(app.ws("/ws/metrics:room").await);
    }
    (app, members)
}

/// Fills the last free slot with a `/ws` connection that sends a ping, a frame that does
/// not parse and a subscribe to `metrics:other`.
async fn chatty(app: &TestApp) -> Ws {
    let mut chatty = app.ws("/ws").await;
    chatty.send_json(json!({"type": "ping"})).await;
    assert_eq!(chatty.recv_json().await["type"], "pong");
    chatty.send_json(json!({"type": "nonsense"})).await;
    assert_eq!(chatty.recv_json().await["type"], "error");
    chatty.subscribe("metrics:other").await;
    chatty
}

#[tokio::test]
async fn notify_counters_move_by_exactly_the_notifications_sent() {
    let (app, mut members) = spawn_room_app().await;

    for i in 0..NOTIFIES {
        let reply = app.notify_ok("metrics:room", "tick", json!(i)).await;
        assert_eq!(reply["recipients"], MEMBERS);
    }
    for ws in &mut members {
        for i in 0..NOTIFIES {
            assert_eq!(ws.recv_json().await["data"], json!(i));
        }
    }
    let delivered = (MEMBERS * NOTIFIES) as f64;
    let s = scrape_when(&app, "herald_messages_delivered_total", delivered).await;

    let n = NOTIFIES as f64;
    assert_eq!(s.get(r#"herald_notify_requests_total{status="202"}"#), n);
    assert_eq!(s.get("herald_notify_duration_seconds_count"), n);
    assert_eq!(
        s.get(r#"herald_notify_duration_seconds_bucket{le="+Inf"}"#),
        n
    );
    assert_eq!(
        s.get(r#"herald_http_requests_total{route="/notify",status="202"}"#),
        n
    );
    assert_eq!(s.get("herald_fanout_size_count"), n);
    assert_eq!(s.get("herald_fanout_size_sum"), delivered);
    // One lag sample per written batch: at least one per member, at most one per frame.
    let batches = s.get("herald_delivery_lag_seconds_count");
    assert!(
        (MEMBERS as f64..=delivered).contains(&batches),
        "{batches} batches"
    );
    assert_eq!(
        s.get(r#"herald_messages_dropped_total{reason="closed"}"#),
        0.0
    );
}

#[tokio::test]
async fn connection_counters_count_upgrades_refusals_frames_and_memberships() {
    let (app, _members) = spawn_room_app().await;
    let _chatty = chatty(&app).await;
    // Past --max-connections: refused before any upgrade.
    let refused = app.try_ws("/ws/metrics:room", &[]).await.err().unwrap();
    assert_eq!(refused.status, 503);

    let s = scrape(&app).await;
    assert_eq!(s.get("herald_connections"), (MEMBERS + 1) as f64);
    assert_eq!(
        s.get("herald_connections_accepted_total"),
        (MEMBERS + 1) as f64
    );
    assert_eq!(
        s.get(r#"herald_connections_rejected_total{reason="limit"}"#),
        1.0
    );
    assert_eq!(
        s.get(r#"herald_connections_rejected_total{reason="auth"}"#),
        0.0
    );
    assert_eq!(
        s.get(r#"herald_http_requests_total{route="/ws/{group}",status="503"}"#),
        1.0
    );
    assert_eq!(
        s.get(r#"herald_http_requests_total{route="/ws/{group}",status="101"}"#),
        MEMBERS as f64
    );
    assert_eq!(s.get("herald_subscriptions"), (MEMBERS + 1) as f64);
    assert_eq!(s.get("herald_groups"), 2.0);
    for (kind, count) in [("ping", 1.0), ("invalid", 1.0), ("subscribe", 1.0)] {
        let series = format!(r#"herald_client_frames_total{{type="{kind}"}}"#);
        assert_eq!(s.get(&series), count, "{series}");
    }
}

#[tokio::test]
async fn a_group_close_counts_one_application_disconnect_per_member() {
    let (app, mut members) = spawn_room_app().await;
    let _chatty = chatty(&app).await;

    // A backend closes the group with its own code: one disconnect per member, counted
    // as "application" (3000-4999 other than herald's own are one label value).
    let res = app
        .close_group("metrics:room", json!({"code": 4403, "reason": "bye"}))
        .await;
    assert_eq!(res.status(), 200);
    for ws in &mut members {
        assert_eq!(ws.expect_close().await.0, 4403);
    }
    let s = scrape_when(
        &app,
        r#"herald_disconnects_total{code="application"}"#,
        MEMBERS as f64,
    )
    .await;
    assert_eq!(s.get(r#"herald_disconnects_total{code="4100"}"#), 0.0);
    let s = if s.get("herald_connections") == 1.0 {
        s
    } else {
        scrape_when(&app, "herald_connections", 1.0).await
    };
    assert_eq!(s.get("herald_subscriptions"), 1.0);
    assert_eq!(s.get("herald_groups"), 1.0);
}

#[tokio::test]
async fn routes_are_labelled_by_template_never_by_raw_path() {
    let (app, _members) = spawn_room_app().await;
    let _chatty = chatty(&app).await;

    app.group("metrics:other").await;
    let res = app.http.get(app.url("/no/such/path")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let text = app.metrics_text().await;
    assert!(
        !text.contains("metrics:"),
        "a group name leaked into a label"
    );
    let s = Scrape::parse(&text);
    assert_eq!(
        s.get(r#"herald_http_requests_total{route="/groups/{group}",status="200"}"#),
        1.0
    );
    assert_eq!(
        s.get(r#"herald_http_requests_total{route="unmatched",status="404"}"#),
        1.0
    );
}

#[tokio::test]
async fn a_slow_consumer_is_counted_as_dropped_and_closed_with_4100() {
    let app = spawn_app_with(|c| c.send_queue = 4).await;
    let mut slow = app.ws("/ws/metrics:slow").await; // never reads until the end
    let filler = "x".repeat(16 * 1024);
    let mut sent = 0;
    while app.group("metrics:slow").await["subscribers"] == 1 {
        assert!(sent < 3000, "the slow consumer was never closed");
        app.notify_ok("metrics:slow", "tick", json!({ "filler": filler }))
            .await;
        sent += 1;
    }
    let (_, code, _) = slow.read_until_close().await;
    assert_eq!(code, 4100);
    let s = scrape_when(&app, r#"herald_disconnects_total{code="4100"}"#, 1.0).await;
    // At least the notification that did not fit; more when others arrived before the
    // closing member had left the group.
    assert!(s.get(r#"herald_messages_dropped_total{reason="slow_consumer"}"#) >= 1.0);
    assert_eq!(s.get("herald_fanout_size_count"), f64::from(sent));
}

/// Metric names the Grafana dashboard queries, read from its `expr` fields.
fn dashboard_metrics() -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(expr)) => out.extend(names_in(expr)),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/herald-dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    walk(&dashboard, &mut out);
    out
}

/// Identifiers in a PromQL expression that start like herald's or the process metrics.
fn names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("herald_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_dashboard_metric_exists_and_the_scrape_passes_promtool() {
    let app = spawn_app().await;
    // Some traffic, so that the labelled HTTP series exist too.
    app.notify_ok("metrics:any", "tick", json!(1)).await;
    let text = app.metrics_text().await;
    let have = Scrape::parse(&text).names();

    let wanted = dashboard_metrics();
    assert!(wanted.len() > 10, "the dashboard queries {wanted:?}?");
    let missing: Vec<&String> = wanted.difference(&have).collect();
    assert!(missing.is_empty(), "dashboard metrics missing: {missing:?}");

    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(promtool) = promtool else {
        println!("note: promtool not installed; skipping `promtool check metrics`");
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app().await;
    let given = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-42.a_b");

    let long = "x".repeat(200);
    for bad in [None, Some("has spaces"), Some(long.as_str())] {
        let mut req = app.http.get(app.url("/nope"));
        if let Some(bad) = bad {
            req = req.header("x-request-id", bad);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 404);
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{bad:?} -> {id}"
        );
    }
}

/// Every request logs inside its `request` span, which names the route template and
/// the id the request was answered with: for `POST /notify` and `POST /notify/batch`
/// (answered before warp's route table) as for the routes of the table and a 404.
#[tokio::test]
async fn request_log_lines_carry_the_route_and_the_request_id() {
    let (herald, logs) = Herald::start_logging(&[], "info,herald=debug");
    let http = reqwest::Client::new();
    let notify = json!({"group": "g", "data": 1});
    let batch = json!({"notifications": [notify]});
    let cases = [
        (
            "POST",
            "/notify",
            Some(&notify),
            Some("trace-7"),
            "/notify",
            202,
        ),
        ("POST", "/notify", Some(&notify), None, "/notify", 202),
        (
            "POST",
            "/notify/batch",
            Some(&batch),
            Some("b.1"),
            "/notify/batch",
            202,
        ),
        ("POST", "/notify", None, None, "/notify", 415),
        ("GET", "/notify", None, Some("m:1"), "/notify", 405),
        ("GET", "/healthz", None, None, "/healthz", 200),
        ("GET", "/nope", None, None, "unmatched", 404),
    ];
    for (method, path, body, given, route, status) in cases {
        let mut req = http.request(method.parse().unwrap(), herald.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        if let Some(given) = given {
            req = req.header("x-request-id", given);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        if let Some(given) = given {
            assert_eq!(id, given);
        }
        let line = loop {
            let line = logs
                .recv_timeout(std::time::Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no \"request finished\" line for {method} {path}"));
            if line["fields"]["message"] == "request finished" && line["span"]["request_id"] == id {
                break line;
            }
        };
        let span = &line["span"];
        assert_eq!(span["name"], "request");
        assert_eq!(span["method"], method, "{line}");
        assert_eq!(span["route"], route, "{line}");
        assert_eq!(line["fields"]["status"], status, "{line}");
    }
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_its_own_address_and_stops_on_shutdown() {
    let app = spawn_app_with(|c| c.metrics_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let metrics_addr = app.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics_addr, app.addr);

    let main = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), 404);
    let res = app
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("herald_build_info"));

    app.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(metrics_addr).await.is_err(),
        "the metrics listener still accepts after shutdown"
    );
}

#[tokio::test]
async fn a_client_that_vanishes_without_a_close_frame_is_counted_as_1006_not_1002() {
    let app = spawn_app().await;
    let ws = app.ws("/ws/g").await;
    // Drop the TCP connection without a close frame.
    drop(ws);
    let s = scrape_when(&app, r#"herald_disconnects_total{code="1006"}"#, 1.0).await;
    assert_eq!(s.get(r#"herald_disconnects_total{code="1002"}"#), 0.0);
}

/// A WebSocket's log lines carry its upgrade request (`request` span: method, route, id)
/// and the connection (`conn` span: id, peer address) for its whole life, also for
/// lines written long after the upgrade request was answered (the session makes these
/// spans afresh when it logs rather than keeping them open while idle).
#[tokio::test]
async fn connection_log_lines_carry_the_upgrade_request_and_the_connection() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (herald, logs) = Herald::start_logging(&[], "info,herald=debug");
    let mut req = herald.ws_url("/ws/g").into_client_request().unwrap();
    req.headers_mut()
        .insert("x-request-id", "up-42".parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "up-42");
    // Idle for a while, then the client closes: herald logs "connection closed" then.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ws.close(None).await.unwrap();
    let mut conn_id = None;
    for message in ["connection opened", "connection closed"] {
        let line = next_line(&logs, message);
        let spans = line["spans"].as_array().expect("spans");
        assert_eq!(spans.len(), 2, "{line}");
        let (request, conn) = (&spans[0], &spans[1]);
        assert_eq!(request["name"], "request", "{line}");
        assert_eq!(request["method"], "GET", "{line}");
        assert_eq!(request["route"], "/ws/{group}", "{line}");
        assert_eq!(request["request_id"], "up-42", "{line}");
        assert_eq!(conn["name"], "conn", "{line}");
        assert!(
            conn["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with("127.0.0.1:")),
            "{line}"
        );
        let id = conn["conn"].as_u64().expect("conn id");
        assert_eq!(*conn_id.get_or_insert(id), id, "{line}");
        assert_eq!(line["fields"]["conn"], id, "{line}");
    }
}

/// A client that vanishes with a TCP reset (no close frame, no FIN) is logged as closed
/// with its peer address too: the address an operator looks for is the one of the
/// connection that went away, and the socket no longer knows it after the reset.
#[tokio::test]
async fn the_close_line_of_a_reset_connection_still_names_its_peer() {
    let (herald, logs) = Herald::start_logging(&[], "info,herald=debug");
    let url = herald.ws_url("/ws/g");
    let tcp =
        tokio::net::TcpStream::connect(url.trim_start_matches("ws://").split('/').next().unwrap())
            .await
            .unwrap();
    let local = tcp.local_addr().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap();
    // Wait until herald has the connection, then reset it: SO_LINGER 0 makes the close
    // send an RST.
    let opened = next_line(&logs, "connection opened");
    let tcp = ws.into_inner();
    socket2::SockRef::from(&tcp)
        .set_linger(Some(std::time::Duration::ZERO))
        .unwrap();
    drop(tcp);
    let closed = next_line(&logs, "connection closed");
    for line in [&opened, &closed] {
        let conn = &line["spans"][1];
        assert_eq!(conn["name"], "conn", "{line}");
        assert_eq!(conn["remote"], local.to_string(), "{line}");
    }
}

/// The next log line whose message is `message` (earlier ones are skipped).
fn next_line(
    logs: &std::sync::mpsc::Receiver<serde_json::Value>,
    message: &str,
) -> serde_json::Value {
    loop {
        let line = logs
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {message:?} line"));
        if line["fields"]["message"] == message {
            return line;
        }
    }
}
