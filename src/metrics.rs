//! `Metrics`: every Prometheus metric herald exports, as typed handles registered once
//! into the node's own [`Registry`] (not the global one, so ten nodes in one test process
//! keep ten sets of numbers).
//!
//! Names carry the `herald_` prefix and base units (seconds, bytes). No label ever takes
//! a group name, user id, connection id or raw path: those sets are unbounded, and every
//! distinct label value is a new time series that Prometheus keeps in memory (one
//! malicious client subscribing to random group names would take the monitoring down
//! with it). Every label here has a small fixed set of values, pre-initialised at 0 so
//! dashboards and `rate()` see them before the first event.
//!
//! Call sites use the fields and methods below, never metric-name strings.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use warp::http::StatusCode;

use crate::protocol::close::TABLE;
use crate::protocol::ClientFrame;

/// Buckets for request handling times: 50 µs to 1 s.
const REQUEST_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Buckets for notify → socket latency: 100 µs to 10 s (a backlogged client lags seconds).
const LAG_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for recipients per notification: 0 (nobody listening) to 50 000.
const FANOUT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
    20_000.0, 50_000.0,
];

/// Why an upgrade was refused (`herald_connections_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No valid token (401), or more than one.
    Auth,
    /// `Origin` not in `--allowed-origins`.
    Origin,
    /// `--max-connections` reached.
    Limit,
    /// Shutdown has begun.
    ShuttingDown,
    /// A valid token that does not allow the path's group.
    Forbidden,
}

impl RejectReason {
    const ALL: [Self; 5] = [
        Self::Auth,
        Self::Origin,
        Self::Limit,
        Self::ShuttingDown,
        Self::Forbidden,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Origin => "origin",
            Self::Limit => "limit",
            Self::ShuttingDown => "shutting_down",
            Self::Forbidden => "forbidden",
        }
    }
}

/// Why herald closed or refused a plain-HTTP connection
/// (`herald_http_connections_closed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpClose {
    /// The request head did not arrive whole within `--http-header-timeout`.
    HeaderTimeout,
    /// A kept-alive connection sent no request within `--http-idle-timeout`.
    IdleTimeout,
    /// A request body did not arrive within `--http-body-timeout` (answered 408).
    BodyTimeout,
    /// The request head outgrew `--max-header-bytes` (answered 431).
    HeadTooLarge,
    /// Evicted while waiting for a request, to make room at `--max-http-connections`.
    Evicted,
    /// Refused with 503: every slot of `--max-http-connections` was busy.
    Refused,
}

impl HttpClose {
    const ALL: [Self; 6] = [
        Self::HeaderTimeout,
        Self::IdleTimeout,
        Self::BodyTimeout,
        Self::HeadTooLarge,
        Self::Evicted,
        Self::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::HeaderTimeout => "header_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::HeadTooLarge => "head_too_large",
            Self::Evicted => "evicted",
            Self::Refused => "refused",
        }
    }
}

/// Which endpoint accepted notifications (`herald_notifications_accepted_total{route}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /notify`: one notification per request.
    Notify,
    /// `POST /notify/batch`: one per item.
    Batch,
}

impl Via {
    const ALL: [Self; 2] = [Self::Notify, Self::Batch];

    /// The route template, as the HTTP metrics label it.
    fn label(self) -> &'static str {
        match self {
            Self::Notify => "/notify",
            Self::Batch => "/notify/batch",
        }
    }
}

/// The plain-HTTP connection metrics, cloned into every listener's serving loop.
#[derive(Debug, Clone)]
pub struct HttpConnectionMetrics {
    /// `herald_http_connections`: open plain-HTTP connections (those holding a
    /// `--max-http-connections` slot; an upgraded WebSocket leaves it).
    pub open: IntGauge,
    closed: IntCounterVec,
}

impl HttpConnectionMetrics {
    /// Counts a connection herald closed or refused.
    pub fn closed(&self, why: HttpClose) {
        self.closed.with_label_values(&[why.label()]).inc();
    }
}

/// How a connection ended, for `herald_disconnects_total{code}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// herald sent this close code (its own, or one a backend chose with a group or user
    /// close).
    Code(u16),
    /// The client closed; herald echoed it (counted as 1000, as in the close-code table).
    Client,
    /// No close frame either way: the socket failed, stalled or hit EOF (counted as
    /// 1006, RFC 6455's code for exactly that).
    Dropped,
}

/// `code` label of backend-chosen codes other than 1000: one value, because 3000–4999
/// would be 2000 possible series.
const APPLICATION: &str = "application";

impl Disconnect {
    fn label(self) -> String {
        let code = match self {
            Self::Code(code) => code,
            Self::Client => 1000,
            Self::Dropped => 1006,
        };
        if code == 1000 || code == 1006 || TABLE.iter().any(|c| c.code == code) {
            code.to_string()
        } else {
            APPLICATION.to_owned()
        }
    }
}

/// `herald_client_frames_total{type}` label values, in `ClientFrame` order.
const FRAME_TYPES: [&str; 6] = [
    "subscribe",
    "unsubscribe",
    "ping",
    "publish",
    "refresh",
    "invalid",
];

/// The metrics of one herald node, registered once into its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `herald_connections`: open WebSockets (set when scraped).
    pub connections: IntGauge,
    /// `herald_connections_accepted_total`: upgrades answered 101.
    pub connections_accepted: IntCounter,
    connections_rejected: IntCounterVec,
    /// `herald_subscriptions`: group memberships on this node (set when scraped).
    pub subscriptions: IntGauge,
    /// `herald_groups`: groups with local members (set when scraped).
    pub groups: IntGauge,
    notify_requests: ByStatus,
    notifications_accepted: [IntCounter; 2],
    /// `herald_notify_duration_seconds`: `POST /notify` handling time.
    pub notify_duration: Histogram,
    /// `herald_messages_delivered_total`: notification frames written to sockets (added
    /// once per drain round and once per backlog a session finishes).
    pub messages_delivered: IntCounter,
    /// `herald_messages_dropped_total{reason="slow_consumer"}`: notifications that did not
    /// fit a member's full queue (the member is closed with 4100).
    pub dropped_slow_consumer: IntCounter,
    /// `herald_messages_dropped_total{reason="closed"}`: queued frames discarded because
    /// their connection was being closed.
    pub dropped_closed: IntCounter,
    /// `herald_fanout_size`: local recipients per published notification.
    pub fanout_size: Histogram,
    /// `herald_delivery_lag_seconds`: from queueing to writing: a drain round's frames,
    /// or a backlog a session finished (from its first frame).
    pub delivery_lag: Histogram,
    disconnects: IntCounterVec,
    client_frames: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// Open plain-HTTP connections, and those herald cut off and why.
    pub http_connections: HttpConnectionMetrics,
    /// `herald_broker_publish_errors_total`: publishes the broker failed.
    pub broker_publish_errors: IntCounter,
    /// `herald_broker_reconnects_total`: broker reconnections (Redis).
    pub broker_reconnects: IntCounter,
    /// `herald_history_entries`: notifications kept in this process's history (set when
    /// scraped).
    pub history_entries: IntGauge,
    /// `herald_history_bytes`: bytes they take, as counted against
    /// `--history-max-bytes` (set when scraped).
    pub history_bytes: IntGauge,
    history_recoveries: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (and, on Linux, the process collector).
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = Registrar(&registry);
        let dropped = reg.counter_vec(
            "herald_messages_dropped_total",
            "Notification frames not delivered: slow_consumer (did not fit a full queue), \
             closed (queued, then discarded as the connection closed).",
            "reason",
            ["slow_consumer", "closed"],
        );
        let build = reg.gauge_vec(
            "herald_build_info",
            "Always 1; the version label says which herald runs.",
            "version",
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        reg.register(prometheus::process_collector::ProcessCollector::for_self());
        Self {
            connections: reg.gauge("herald_connections", "Open WebSocket connections."),
            connections_accepted: reg.counter(
                "herald_connections_accepted_total",
                "WebSocket upgrades accepted (answered 101).",
            ),
            connections_rejected: reg.counter_vec(
                "herald_connections_rejected_total",
                "WebSocket upgrades refused, by reason.",
                "reason",
                RejectReason::ALL.map(RejectReason::label),
            ),
            subscriptions: reg.gauge(
                "herald_subscriptions",
                "Group memberships of connections on this node.",
            ),
            groups: reg.gauge("herald_groups", "Groups with at least one local member."),
            notify_requests: ByStatus::new(
                reg.counter_vec(
                    "herald_notify_requests_total",
                    "POST /notify requests, by HTTP status.",
                    "status",
                    ["202", "400", "401", "403", "413", "415", "503"],
                ),
                None,
            ),
            notifications_accepted: {
                let accepted = reg.counter_vec(
                    "herald_notifications_accepted_total",
                    "Notifications accepted over HTTP (one per POST /notify, one per item of \
                     a POST /notify/batch), by route.",
                    "route",
                    Via::ALL.map(Via::label),
                );
                Via::ALL.map(|via| accepted.with_label_values(&[via.label()]))
            },
            notify_duration: reg.histogram(
                "herald_notify_duration_seconds",
                "Time to handle POST /notify, publish and local fan-out included.",
                REQUEST_BUCKETS,
            ),
            messages_delivered: reg.counter(
                "herald_messages_delivered_total",
                "Notification frames written to WebSocket connections.",
            ),
            dropped_slow_consumer: dropped.with_label_values(&["slow_consumer"]),
            dropped_closed: dropped.with_label_values(&["closed"]),
            fanout_size: reg.histogram(
                "herald_fanout_size",
                "Local recipients per published notification.",
                FANOUT_BUCKETS,
            ),
            delivery_lag: reg.histogram(
                "herald_delivery_lag_seconds",
                "From a notification being queued for a connection to it being written.",
                LAG_BUCKETS,
            ),
            disconnects: reg.counter_vec(
                "herald_disconnects_total",
                "WebSocket connections ended, by close code (1006: no close frame; \
                 application: a backend-chosen code other than 1000).",
                "code",
                disconnect_labels(),
            ),
            client_frames: reg.counter_vec(
                "herald_client_frames_total",
                "Text frames received from clients, by type.",
                "type",
                FRAME_TYPES,
            ),
            http_requests: reg.counter_vec_2(
                "herald_http_requests_total",
                "HTTP requests (WebSocket upgrades included), by route template and status.",
                ["route", "status"],
            ),
            http_duration: reg.histogram_vec(
                "herald_http_request_duration_seconds",
                "HTTP request handling time, by route template.",
                "route",
                REQUEST_BUCKETS,
            ),
            http_connections: HttpConnectionMetrics {
                open: reg.gauge(
                    "herald_http_connections",
                    "Open plain-HTTP connections (not WebSockets), over every listener.",
                ),
                closed: reg.counter_vec(
                    "herald_http_connections_closed_total",
                    "Plain-HTTP connections herald closed or refused, by reason: \
                     header_timeout, idle_timeout, body_timeout (408), head_too_large (431), \
                     evicted and refused (503) at --max-http-connections.",
                    "reason",
                    HttpClose::ALL.map(HttpClose::label),
                ),
            },
            broker_publish_errors: reg.counter(
                "herald_broker_publish_errors_total",
                "Publishes the broker failed.",
            ),
            broker_reconnects: reg.counter(
                "herald_broker_reconnects_total",
                "Times the broker reconnected to its backing service.",
            ),
            history_entries: reg.gauge(
                "herald_history_entries",
                "Notifications kept in this process's history, all groups together.",
            ),
            history_bytes: reg.gauge(
                "herald_history_bytes",
                "Bytes this process's history takes (counted against --history-max-bytes).",
            ),
            history_recoveries: reg.counter_vec(
                "herald_history_recoveries_total",
                "Resumes (subscribe with since), by outcome: recovered, epoch_changed, \
                 gap (history no longer reaches since), unavailable (broker error).",
                "outcome",
                crate::broker::history::OUTCOMES,
            ),
            registry: registry.clone(),
        }
    }

    /// Counts a resume by its outcome (one of `broker::history::OUTCOMES`).
    pub fn recovery(&self, outcome: &'static str) {
        self.history_recoveries.with_label_values(&[outcome]).inc();
    }

    /// Counts a refused upgrade.
    pub fn connection_rejected(&self, why: RejectReason) {
        self.connections_rejected
            .with_label_values(&[why.label()])
            .inc();
    }

    /// Counts an ended connection.
    pub fn disconnected(&self, how: Disconnect) {
        self.disconnects.with_label_values(&[&how.label()]).inc();
    }

    /// Counts a text frame from a client: its type, or `None` when it did not parse.
    pub fn client_frame(&self, frame: Option<&ClientFrame>) {
        let i = match frame {
            Some(ClientFrame::Subscribe { .. }) => 0,
            Some(ClientFrame::Unsubscribe { .. }) => 1,
            Some(ClientFrame::Ping) => 2,
            Some(ClientFrame::Publish { .. }) => 3,
            Some(ClientFrame::Refresh { .. }) => 4,
            None => 5,
        };
        self.client_frames
            .with_label_values(&[FRAME_TYPES[i]])
            .inc();
    }

    /// Records one published notification's local fan-out.
    pub fn published(&self, queued: usize, slow: usize) {
        self.fanout_size.observe(queued as f64);
        if slow > 0 {
            self.dropped_slow_consumer.inc_by(slow as u64);
        }
    }

    /// Records one batch of `frames` notification frames written to sockets; `since` is
    /// when the batch's first frame was queued. Once per batch, not per frame, so the
    /// fan-out path does no atomic work for metrics.
    pub fn batch_written(&self, frames: usize, since: Option<Instant>) {
        if frames == 0 {
            return;
        }
        self.messages_delivered.inc_by(frames as u64);
        if let Some(since) = since {
            self.delivery_lag.observe(since.elapsed().as_secs_f64());
        }
    }

    /// Records one HTTP request. `route` is a route template from the route table (never
    /// a raw path), so the label set stays bounded.
    pub fn http_request(&self, route: &'static str, status: StatusCode, took: Duration) {
        self.http_requests
            .with_label_values(&[route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The HTTP metrics of the route `template`, looked up once: what
    /// [`Metrics::http_request`] records, for a route that answers many requests.
    pub fn route(&self, template: &'static str) -> RouteMetrics {
        RouteMetrics {
            requests: ByStatus::new(self.http_requests.clone(), Some(template)),
            duration: self.http_duration.with_label_values(&[template]),
        }
    }

    /// Records one `POST /notify` request, answered with `status` after `took`.
    pub fn notify_request(&self, status: StatusCode, took: Duration) {
        self.notify_requests.inc(status);
        self.notify_duration.observe(took.as_secs_f64());
    }

    /// Counts `n` notifications accepted (answered 202) by the `via` endpoint.
    pub fn notifications_accepted(&self, via: Via, n: usize) {
        self.notifications_accepted[via as usize].inc_by(n as u64);
    }

    /// Everything registered, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail; a metric family that cannot be encoded would be
        // a bug in the names above, which the e2e scrape test catches.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One route's `herald_http_requests_total{route,status}` and
/// `herald_http_request_duration_seconds{route}`, resolved once ([`Metrics::route`]) so
/// that recording a request takes no label lookup.
#[derive(Debug)]
pub struct RouteMetrics {
    requests: ByStatus,
    duration: Histogram,
}

impl RouteMetrics {
    /// Records one request answered with `status` after `took`.
    pub fn record(&self, status: StatusCode, took: Duration) {
        self.requests.inc(status);
        self.duration.observe(took.as_secs_f64());
    }
}

/// The statuses whose counters [`ByStatus`] keeps once looked up: what the API answers
/// most. Others are looked up on each use, as before.
const KEPT_STATUSES: [StatusCode; 12] = [
    StatusCode::OK,
    StatusCode::ACCEPTED,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// A counter family whose last label is `status` (after an optional fixed `route`), each
/// status's counter kept after its first use. A series still appears in `/metrics` only
/// once counted (or pre-initialised by the family), exactly as with a lookup per use.
#[derive(Debug)]
struct ByStatus {
    family: IntCounterVec,
    route: Option<&'static str>,
    kept: [OnceLock<IntCounter>; KEPT_STATUSES.len()],
}

impl ByStatus {
    fn new(family: IntCounterVec, route: Option<&'static str>) -> Self {
        Self {
            family,
            route,
            kept: Default::default(),
        }
    }

    fn inc(&self, status: StatusCode) {
        match KEPT_STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.kept[i].get_or_init(|| self.lookup(status)).inc(),
            None => self.lookup(status).inc(),
        }
    }

    fn lookup(&self, status: StatusCode) -> IntCounter {
        match self.route {
            Some(route) => self.family.with_label_values(&[route, status.as_str()]),
            None => self.family.with_label_values(&[status.as_str()]),
        }
    }
}

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn disconnect_labels() -> Vec<String> {
    let mut codes: Vec<u16> = TABLE.iter().map(|c| c.code).collect();
    codes.extend([1000, 1006]);
    codes.sort_unstable();
    codes.dedup();
    let mut labels: Vec<String> = codes.iter().map(u16::to_string).collect();
    labels.push(APPLICATION.to_owned());
    labels
}

/// Creates metrics and registers them; the names are constants above, so a failure is a
/// programming error caught by every test that builds a `Metrics`.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn register<C: prometheus::core::Collector + 'static>(&self, c: C) {
        self.0
            .register(Box::new(c))
            .expect("each metric is registered once, under a valid, unique name");
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        let c = IntCounter::new(name, help).expect("valid metric name");
        self.register(c.clone());
        c
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        let g = IntGauge::new(name, help).expect("valid metric name");
        self.register(g.clone());
        g
    }

    fn gauge_vec(&self, name: &str, help: &str, label: &str) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric name");
        self.register(g.clone());
        g
    }

    /// A counter with one label, every value of which starts at 0.
    fn counter_vec<S: AsRef<str>>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = S>,
    ) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric name");
        for v in values {
            c.with_label_values(&[v.as_ref()]);
        }
        self.register(c.clone());
        c
    }

    fn counter_vec_2(&self, name: &str, help: &str, labels: [&str; 2]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid metric name");
        self.register(c.clone());
        c
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let h = Histogram::with_opts(opts).expect("valid metric name and buckets");
        self.register(h.clone());
        h
    }

    fn histogram_vec(&self, name: &str, help: &str, label: &str, buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let h = HistogramVec::new(opts, &[label]).expect("valid metric name and buckets");
        self.register(h.clone());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnect_codes_are_bounded() {
        assert_eq!(Disconnect::Code(4100).label(), "4100");
        assert_eq!(Disconnect::Code(1000).label(), "1000");
        assert_eq!(Disconnect::Code(4403).label(), "application");
        assert_eq!(Disconnect::Code(3000).label(), "application");
        assert_eq!(Disconnect::Client.label(), "1000");
        assert_eq!(Disconnect::Dropped.label(), "1006");
    }

    #[test]
    fn every_labelled_series_exists_at_zero() {
        let text = Metrics::new().render();
        for line in [
            r#"herald_connections_rejected_total{reason="shutting_down"} 0"#,
            r#"herald_messages_dropped_total{reason="closed"} 0"#,
            r#"herald_disconnects_total{code="application"} 0"#,
            r#"herald_client_frames_total{type="invalid"} 0"#,
            r#"herald_http_connections_closed_total{reason="header_timeout"} 0"#,
            r#"herald_http_connections_closed_total{reason="refused"} 0"#,
            "herald_http_connections 0",
            r#"herald_history_recoveries_total{outcome="gap"} 0"#,
            "herald_history_bytes 0",
            "herald_build_info{version=",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
