//! `ingest`: `POST /notify` (or, with `--batch`, `POST /notify/batch`) throughput into a
//! group with no members.
//!
//! Every connection is opened and warmed up first (`--warmup` requests over the same
//! connections, not counted), so that the measured phase is the server's steady state:
//! without it, a short run mostly measured connection setup and cold caches.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;
use tokio::time::{timeout, Instant};

use crate::cpu::{CpuUse, PhaseMeters};
use crate::http::HttpConn;
use crate::latency::{new_histogram, now_ns, Latency};
use crate::report::{round3, Outcome, Report};
use crate::target::Target;
use crate::Common;

/// The arguments; serialised, the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct IngestArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Requests to send in total.
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Padding bytes in each notify's data.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Notifications per request: 1 sends `POST /notify`, more send `POST /notify/batch`
    /// with that many items (up to 1,000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Requests sent over the same connections before the measured ones and not counted
    /// (default: 5,000 notifications' worth, at least one per connection; 0 = none).
    #[arg(long)]
    pub warmup: Option<u64>,
}

impl IngestArgs {
    /// The warm-up requests: `--warmup`, or 5,000 notifications' worth.
    fn warmup_requests(&self) -> u64 {
        self.warmup
            .unwrap_or_else(|| 5_000u64.div_ceil(self.batch).max(self.concurrency as u64))
    }
}

fn error(t: &mut Totals, e: String) {
    t.errors += 1;
    t.first_error.get_or_insert(e);
}

#[derive(Default)]
struct Totals {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    latency: Option<Histogram<u64>>,
}

impl Totals {
    fn merge(&mut self, t: Totals) {
        for (s, n) in t.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += t.errors;
        if self.first_error.is_none() {
            self.first_error = t.first_error;
        }
        if let (Some(a), Some(b)) = (self.latency.as_mut(), t.latency.as_ref()) {
            a.add(b).expect("same bounds");
        }
    }
}

/// What each worker sends.
#[derive(Clone)]
struct Load {
    group: Arc<String>,
    requests: u64,
    payload: usize,
    batch: u64,
}

/// Writes request `i`'s body: one notify, or `batch` of them as a batch body.
fn write_body(body: &mut Vec<u8>, load: &Load, pad: &str, i: u64) {
    body.clear();
    let group = &load.group;
    let item = |body: &mut Vec<u8>, seq: u64| {
        let _ = write!(
            body,
            r#"{{"group":"{group}","event":"bench","data":{{"seq":{seq},"t":{},"pad":"{pad}"}}}}"#,
            now_ns()
        );
    };
    if load.batch == 1 {
        item(body, i);
        return;
    }
    body.extend_from_slice(br#"{"notifications":["#);
    for k in 0..load.batch {
        if k > 0 {
            body.push(b',');
        }
        item(body, i * load.batch + k);
    }
    body.extend_from_slice(b"]}");
}

/// One phase's share of requests: workers take request numbers from `next` until `count`.
struct Phase {
    next: AtomicU64,
    count: u64,
}

impl Phase {
    fn new(count: u64) -> Arc<Self> {
        Arc::new(Self {
            next: AtomicU64::new(0),
            count,
        })
    }
}

/// How a worker's two phases are lined up: every worker finishes its warm-up and meets
/// the others (and `send_all`) at `warm`, then waits at `go` while `send_all` starts the
/// clock, so the measured phase begins with every connection open and idle.
struct Gates {
    warmup: Arc<Phase>,
    measured: Arc<Phase>,
    warm: Arc<Barrier>,
    go: Arc<Barrier>,
}

/// One keep-alive connection's requests: the warm-up, then the measured ones.
async fn worker(target: Target, load: Load, gates: Gates, deadline: Instant) -> (Totals, Totals) {
    let mut w = Worker {
        target,
        path: if load.batch == 1 {
            "/notify"
        } else {
            "/notify/batch"
        },
        pad: "x".repeat(load.payload),
        body: Vec::with_capacity((128 + load.payload) * load.batch as usize),
        conn: None,
        load,
        deadline,
    };
    let mut warm = Totals::default();
    if gates.warmup.count > 0 {
        // Every connection is opened during the warm-up, even if the others take all of
        // its requests.
        w.connect(&mut warm).await;
    }
    w.send(&gates.warmup, &mut warm, 0).await;
    gates.warm.wait().await;
    gates.go.wait().await;
    let mut measured = Totals {
        latency: Some(new_histogram()),
        ..Default::default()
    };
    w.send(&gates.measured, &mut measured, gates.warmup.count)
        .await;
    (warm, measured)
}

/// A worker's connection and what it sends.
struct Worker {
    target: Target,
    load: Load,
    path: &'static str,
    pad: String,
    body: Vec<u8>,
    conn: Option<HttpConn>,
    deadline: Instant,
}

impl Worker {
    /// Whether a connection is open, opening one now if there is none (a failure is
    /// counted in `totals`, after a short pause so that a refusing server is not hammered).
    async fn connect(&mut self, totals: &mut Totals) -> bool {
        if self.conn.is_none() {
            match HttpConn::connect(&self.target).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    error(totals, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        self.conn.is_some()
    }

    /// Sends `phase`'s requests (numbered from `first_seq`) until none are left or the
    /// deadline passes, counting the answers in `totals`.
    async fn send(&mut self, phase: &Phase, totals: &mut Totals, first_seq: u64) {
        loop {
            let i = phase.next.fetch_add(1, Relaxed);
            if i >= phase.count || Instant::now() >= self.deadline {
                break;
            }
            if !self.connect(totals).await {
                continue;
            }
            write_body(&mut self.body, &self.load, &self.pad, first_seq + i);
            let Some(c) = self.conn.as_mut() else {
                continue;
            };
            let sent = Instant::now();
            match timeout(Duration::from_secs(10), c.post_json(self.path, &self.body)).await {
                Ok(Ok(reply)) => {
                    *totals.statuses.entry(reply.status).or_default() += 1;
                    if let Some(h) = totals.latency.as_mut() {
                        h.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                    }
                    if c.closing() {
                        self.conn = None;
                    }
                }
                Ok(Err(e)) => {
                    error(totals, format!("request: {e}"));
                    self.conn = None;
                }
                Err(_) => {
                    error(totals, "request timed out".into());
                    self.conn = None;
                }
            }
        }
    }
}

/// Runs `ingest`: every request over the keep-alive connections, then the rates.
pub async fn run(a: IngestArgs) -> Result<Report, String> {
    if a.requests == 0 || a.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    let target = Target::parse(&a.common.url)?;
    let load = Load {
        group: Arc::new(format!("bench-ingest-empty-{:x}", now_ns() % 0xff_ffff)),
        requests: a.requests,
        payload: a.payload,
        batch: a.batch,
    };
    let deadline = Instant::now() + Duration::from_secs_f64(a.common.timeout);
    let warmup = a.warmup_requests();
    let (warm, all, elapsed, cpu) = send_all(
        target,
        load,
        a.concurrency,
        warmup,
        deadline,
        a.common.hub_pid,
    )
    .await?;
    let elapsed = elapsed.as_secs_f64();
    let warm_answered: u64 = warm.statuses.values().sum();
    let warm_accepted = warm.statuses.get(&202).copied().unwrap_or(0);

    let answered: u64 = all.statuses.values().sum();
    let accepted = all.statuses.get(&202).copied().unwrap_or(0);
    let results = IngestResults {
        warmup_requests: warm_answered,
        warmup_failed: warmup - warm_accepted,
        requests: answered,
        accepted,
        non_202: answered - accepted,
        statuses: all.statuses,
        errors: all.errors,
        duration_s: round3(elapsed),
        requests_per_s: (answered as f64 / elapsed.max(1e-9)).round(),
        notifications_per_s: ((accepted * a.batch) as f64 / elapsed.max(1e-9)).round(),
        latency_ms: all.latency.as_ref().map(Latency::of),
        cpu,
    };
    Ok(report(&a, &results, warm.first_error.or(all.first_error)))
}

/// Sends `warmup` requests of `load` over `concurrency` keep-alive connections, then,
/// timed and metered (the hub's and the cores' CPU), `load.requests` more over the same
/// connections; adds up what each phase got.
async fn send_all(
    target: Target,
    load: Load,
    concurrency: usize,
    warmup: u64,
    deadline: Instant,
    hub_pid: Option<u32>,
) -> Result<(Totals, Totals, Duration, CpuUse), String> {
    let warmup = Phase::new(warmup);
    let measured = Phase::new(load.requests);
    let warm = Arc::new(Barrier::new(concurrency + 1));
    let go = Arc::new(Barrier::new(concurrency + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let gates = Gates {
            warmup: warmup.clone(),
            measured: measured.clone(),
            warm: warm.clone(),
            go: go.clone(),
        };
        tasks.spawn(worker(target.clone(), load.clone(), gates, deadline));
    }
    // A worker that failed before the gates would leave the others waiting there: the
    // whole run is bounded by the deadline instead.
    timeout(
        deadline.saturating_duration_since(Instant::now()),
        warm.wait(),
    )
    .await
    .map_err(|_| "ingest: the warm-up did not finish before --timeout".to_string())?;
    let meters = PhaseMeters::start(hub_pid);
    let started = Instant::now();
    go.wait().await;
    let mut warmed = Totals::default();
    let mut all = Totals {
        latency: Some(new_histogram()),
        ..Default::default()
    };
    while let Some(r) = tasks.join_next().await {
        let (w, m) = r.map_err(|e| format!("ingest task failed: {e}"))?;
        warmed.merge(w);
        all.merge(m);
    }
    let elapsed = started.elapsed();
    Ok((warmed, all, elapsed, meters.finish()))
}

/// What an `ingest` run measured: the `results` of its JSON line and its table.
#[derive(Serialize)]
struct IngestResults {
    /// Warm-up requests answered (not counted anywhere else).
    warmup_requests: u64,
    /// Warm-up requests not answered with 202.
    warmup_failed: u64,
    /// Requests answered.
    requests: u64,
    accepted: u64,
    non_202: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    duration_s: f64,
    requests_per_s: f64,
    /// Notifications accepted per second (a batch counts all of its items).
    notifications_per_s: f64,
    latency_ms: Option<Latency>,
    #[serde(flatten)]
    cpu: CpuUse,
}

fn report(a: &IngestArgs, r: &IngestResults, first_error: Option<String>) -> Report {
    let what = if a.batch == 1 {
        "POST /notify".to_string()
    } else {
        format!("POST /notify/batch of {}", a.batch)
    };
    let title = format!(
        "ingest: {} {what} to an empty group over {} connections, after {} warm-up",
        a.requests,
        a.concurrency,
        a.warmup_requests()
    );
    let outcome = Outcome {
        scenario: "ingest",
        ok: r.accepted == a.requests && r.errors == 0 && r.warmup_failed == 0,
        target: &a.common.url,
        peer: None,
        params: a,
        results: r,
    };
    let mut report = Report::new(title, &outcome);
    report.note("bottleneck", r.cpu.bottleneck());
    if let Some(e) = first_error {
        report.note("first error", e);
    }
    report
}
