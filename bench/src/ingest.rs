//! `ingest`: `POST /notify` (or, with `--batch`, `POST /notify/batch`) throughput into a
//! group with no members.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
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

async fn worker(target: Target, load: Load, next: Arc<AtomicU64>, deadline: Instant) -> Totals {
    let (requests, payload) = (load.requests, load.payload);
    let path = if load.batch == 1 {
        "/notify"
    } else {
        "/notify/batch"
    };
    let pad = "x".repeat(payload);
    let mut totals = Totals {
        latency: Some(new_histogram()),
        ..Default::default()
    };
    let mut conn: Option<HttpConn> = None;
    let mut body = Vec::with_capacity((128 + payload) * load.batch as usize);
    loop {
        let i = next.fetch_add(1, Relaxed);
        if i >= requests || Instant::now() >= deadline {
            break;
        }
        if conn.is_none() {
            match HttpConn::connect(&target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    error(&mut totals, format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        write_body(&mut body, &load, &pad, i);
        let sent = Instant::now();
        match timeout(Duration::from_secs(10), c.post_json(path, &body)).await {
            Ok(Ok(reply)) => {
                *totals.statuses.entry(reply.status).or_default() += 1;
                if let Some(h) = totals.latency.as_mut() {
                    h.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                }
                if c.closing() {
                    conn = None;
                }
            }
            Ok(Err(e)) => {
                error(&mut totals, format!("request: {e}"));
                conn = None;
            }
            Err(_) => {
                error(&mut totals, "request timed out".into());
                conn = None;
            }
        }
    }
    totals
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
    let meters = PhaseMeters::start(a.common.hub_pid);
    let started = Instant::now();
    let all = send_all(target, load, a.concurrency, deadline).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meters.finish();

    let answered: u64 = all.statuses.values().sum();
    let accepted = all.statuses.get(&202).copied().unwrap_or(0);
    let results = IngestResults {
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
    Ok(report(&a, &results, all.first_error))
}

/// Sends `load` over `concurrency` keep-alive connections and adds up what they got.
async fn send_all(
    target: Target,
    load: Load,
    concurrency: usize,
    deadline: Instant,
) -> Result<Totals, String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(worker(target.clone(), load.clone(), next.clone(), deadline));
    }
    let mut all = Totals {
        latency: Some(new_histogram()),
        ..Default::default()
    };
    while let Some(r) = tasks.join_next().await {
        all.merge(r.map_err(|e| format!("ingest task failed: {e}"))?);
    }
    Ok(all)
}

/// What an `ingest` run measured: the `results` of its JSON line and its table.
#[derive(Serialize)]
struct IngestResults {
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
        "ingest: {} {what} to an empty group over {} connections",
        a.requests, a.concurrency
    );
    let outcome = Outcome {
        scenario: "ingest",
        ok: r.accepted == a.requests && r.errors == 0,
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
