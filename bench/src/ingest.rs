//! `ingest`: `POST /notify` (or, with `--batch`, `POST /notify/batch`) throughput into a
//! group with no members.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::json;
use tokio::time::{timeout, Instant};

use crate::cpu::PhaseMeters;
use crate::http::HttpConn;
use crate::latency::{latency_json, new_histogram, now_ns};
use crate::report::round3;
use crate::report::{latency_row, thousands, Report};
use crate::target::Target;
use crate::Common;

#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    #[command(flatten)]
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

pub async fn run(a: IngestArgs) -> Result<Report, String> {
    if a.requests == 0 || a.concurrency == 0 {
        return Err("--requests and --concurrency must be at least 1".into());
    }
    let target = Target::parse(&a.common.url)?;
    let group = Arc::new(format!("bench-ingest-empty-{:x}", now_ns() % 0xff_ffff));
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(a.common.timeout);
    let meters = PhaseMeters::start(a.common.hub_pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let load = Load {
        group,
        requests: a.requests,
        payload: a.payload,
        batch: a.batch,
    };
    for _ in 0..a.concurrency {
        tasks.spawn(worker(target.clone(), load.clone(), next.clone(), deadline));
    }
    let mut all = Totals {
        latency: Some(new_histogram()),
        ..Default::default()
    };
    while let Some(r) = tasks.join_next().await {
        let t = r.map_err(|e| format!("ingest task failed: {e}"))?;
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        if let (Some(a), Some(b)) = (all.latency.as_mut(), t.latency.as_ref()) {
            a.add(b).expect("same bounds");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = meters.finish();
    let answered: u64 = all.statuses.values().sum();
    let accepted = all.statuses.get(&202).copied().unwrap_or(0);
    let non_202 = answered - accepted;
    let rps = (answered as f64 / elapsed.max(1e-9)).round();
    let nps = ((accepted * a.batch) as f64 / elapsed.max(1e-9)).round();
    let lat = all.latency.as_ref().map_or(json!(null), latency_json);

    let what = if a.batch == 1 {
        "POST /notify".to_string()
    } else {
        format!("POST /notify/batch of {}", a.batch)
    };
    let mut report = Report::new(format!(
        "ingest: {} {what} to an empty group over {} connections",
        a.requests, a.concurrency
    ));
    report.ok = accepted == a.requests && all.errors == 0;
    report.row("target", &a.common.url);
    report.row(
        "requests answered",
        format!(
            "{}/{} in {elapsed:.3} s",
            thousands(answered),
            thousands(a.requests)
        ),
    );
    report.row("requests/s", thousands(rps as u64));
    report.row("notifications/s (accepted)", thousands(nps as u64));
    report.row("non-202", format!("{non_202} {:?}", all.statuses));
    report.row("errors", all.errors);
    report.row("latency p50/p90/p99/max", latency_row(&lat));
    report.cpu_rows(&cpu);
    if let Some(e) = &all.first_error {
        report.row("first error", e);
    }
    report.json = json!({
        "scenario": "ingest",
        "ok": report.ok,
        "target": a.common.url,
        "params": {
            "requests": a.requests,
            "concurrency": a.concurrency,
            "payload": a.payload,
            "batch": a.batch,
            "timeout_s": a.common.timeout,
        },
        "results": {
            "requests": answered,
            "accepted": accepted,
            "non_202": non_202,
            "statuses": all.statuses,
            "errors": all.errors,
            "duration_s": round3(elapsed),
            "requests_per_s": rps,
            "notifications_per_s": nps,
            "latency_ms": lat,
        }
    });
    if let Some(results) = report.json["results"].as_object_mut() {
        results.extend(cpu.json_fields(""));
    }
    Ok(report)
}
