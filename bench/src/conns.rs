//! `conns`: the hub's memory per idle connection, and after a burst of notifies.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep, Instant};

use crate::cpu::{bottleneck, CpuUse, PhaseMeters};
use crate::fanout::{group_names, tally};
use crate::latency::latency_json;
use crate::procfs::rss_kib;
use crate::publish::{self, PublishConfig};
use crate::report::{latency_row, thousands, Report};
use crate::report::{round1, round3};
use crate::subs::{SubConfig, Subscribers, WaitEnd};
use crate::target::Target;
use crate::ConnectOpts;

#[derive(clap::Args, Debug, Clone)]
pub struct ConnsArgs {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub url: String,
    /// Give up (and report what was reached) after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// PID of the hub process, whose VmRSS is read from /proc/PID/status.
    #[arg(long)]
    pub hub_pid: u32,
    #[command(flatten)]
    pub connect: ConnectOpts,
    /// Idle WebSocket connections to open.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Groups the connections are spread over.
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// Notifies sent to every group once all connections are idle.
    #[arg(long, default_value_t = 20)]
    pub burst: u64,
    /// Concurrent HTTP publishers for the burst.
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// Padding bytes in each burst notify.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds to let the hub settle before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
}

fn per_conn(rss: u64, base: u64, conns: u64) -> Option<f64> {
    (conns > 0).then(|| round3(rss.saturating_sub(base) as f64 / conns as f64))
}

pub async fn run(a: ConnsArgs) -> Result<Report, String> {
    if a.connections == 0 || a.groups == 0 {
        return Err("--connections and --groups must be at least 1".into());
    }
    let target = Target::parse(&a.url)?;
    let pid = a.hub_pid;
    let rss = move || rss_kib(pid).map_err(|e| format!("cannot read /proc/{pid}/status: {e}"));
    let settle = Duration::from_secs_f64(a.settle);
    let groups = group_names(a.groups);
    let notifies = a.burst * a.groups as u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.timeout);

    let rss_before = rss()?;
    let subs = Subscribers::spawn(SubConfig {
        target: target.clone(),
        count: a.connections,
        groups: groups.clone(),
        notifies,
        connect_concurrency: a.connect.connect_concurrency,
        connect_retries: a.connect.connect_retries,
        read_buffer: a.connect.read_buffer,
    });
    subs.wait_connected(deadline).await;
    let connect_s = started.elapsed().as_secs_f64();
    let connected = subs.connected();
    sleep(settle).await;
    let rss_idle = rss()?;
    eprintln!("hub RSS {rss_before} KiB before, {rss_idle} KiB with {connected} idle connections");

    let mut published = None;
    let mut wait = WaitEnd::Timeout;
    let mut burst_s = 0.0;
    let mut rss_burst = None;
    let mut cpu = CpuUse::default();
    if notifies > 0 && connected > 0 {
        let meters = PhaseMeters::start(Some(pid));
        let burst_start = crate::latency::now_ns();
        let p = publish::spawn(PublishConfig {
            target,
            groups: groups.clone(),
            notifies,
            rate: None,
            publishers: a.publishers,
            payload: a.payload,
            deadline: deadline.into_std(),
        })
        .await
        .map_err(|_| "the publisher thread died".to_string())?;
        let expected = p.expected_deliveries(&subs.shared.connected_per_group);
        wait = subs
            .wait_delivered(expected, deadline, Duration::from_secs(10))
            .await;
        cpu = meters.finish();
        let last = subs.shared.last_delivery_ns.load(Relaxed);
        burst_s = last.saturating_sub(burst_start) as f64 / 1e9;
        published = Some(p);
        sleep(settle).await;
        rss_burst = Some(rss()?);
    }
    let ended_before_close = subs.shared.ended_early.load(Relaxed);
    let latency = subs.shared.latency.merged();
    let results = subs.finish().await;
    sleep(settle).await;
    let rss_closed = rss().ok();

    let published = published.unwrap_or_default();
    let t = tally(&results, &published, a.groups);
    let idle_per_conn = per_conn(rss_idle, rss_before, connected);
    let burst_per_conn = rss_burst.and_then(|r| per_conn(r, rss_before, connected));
    let lat = latency_json(&latency);
    let post_lat = published.latency.as_ref().map_or(Value::Null, latency_json);
    let publish_s = published
        .last_reply_ns
        .saturating_sub(published.first_send_ns) as f64
        / 1e9;

    let mut report = Report::new(format!(
        "conns: {} idle connections over {} groups, burst of {} notifies per group",
        a.connections, a.groups, a.burst
    ));
    report.ok = connected == a.connections as u64
        && (notifies == 0 || (wait == WaitEnd::Complete && t.loss == 0))
        && ended_before_close == 0;
    let kib = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} KiB"));
    report.row("target", &a.url);
    report.row(
        "connections",
        format!(
            "{}/{} in {connect_s:.2} s ({:.0}/s)",
            thousands(connected),
            thousands(a.connections as u64),
            connected as f64 / connect_s.max(1e-9)
        ),
    );
    report.row("hub RSS before", format!("{} KiB", thousands(rss_before)));
    report.row("hub RSS idle", format!("{} KiB", thousands(rss_idle)));
    report.row("RSS per idle connection", kib(idle_per_conn));
    if let Some(r) = rss_burst {
        report.row("hub RSS after burst", format!("{} KiB", thousands(r)));
    }
    report.row("RSS per connection after burst", kib(burst_per_conn));
    if let Some(r) = rss_closed {
        report.row("hub RSS after close", format!("{} KiB", thousands(r)));
    }
    report.row(
        "burst deliveries",
        format!(
            "{}/{} ({} loss, {} duplicates) in {burst_s:.3} s, {} complete connections",
            thousands(t.received),
            thousands(t.expected),
            t.loss,
            t.duplicates,
            thousands(t.complete_connections)
        ),
    );
    report.row("burst latency p50/p90/p99/max", latency_row(&lat));
    report.row(
        "burst POSTs",
        format!(
            "{} in {publish_s:.3} s, latency {}",
            published.accepted.len(),
            latency_row(&post_lat)
        ),
    );
    if let (Some(h), Some(c)) = (cpu.hub, cpu.client) {
        report.row(
            "burst CPU hub / client (of one core)",
            format!("{h:.0} % / {c:.0} %"),
        );
    }
    report.row(
        "burst bottleneck",
        bottleneck(cpu.hub_core, cpu.client_core),
    );
    if let Some(o) = cpu.others {
        report.row("other processes' CPU during burst", format!("{o:.0} %"));
    }
    if !t.ended.is_empty() {
        report.row("connections ended early", format!("{:?}", t.ended));
    }
    report.row("wait ended", wait.as_str());

    report.json = json!({
        "scenario": "conns",
        "ok": report.ok,
        "target": a.url,
        "params": {
            "connections": a.connections,
            "groups": a.groups,
            "burst": a.burst,
            "payload": a.payload,
            "timeout_s": a.timeout,
        },
        "results": {
            "connections": connected,
            "connect_s": round3(connect_s),
            "connects_per_s": round1(connected as f64 / connect_s.max(1e-9)),
            "rss_before_kib": rss_before,
            "rss_idle_kib": rss_idle,
            "rss_after_burst_kib": rss_burst,
            "rss_after_close_kib": rss_closed,
            "rss_per_conn_idle_kib": idle_per_conn,
            "rss_per_conn_after_burst_kib": burst_per_conn,
            "burst_notifies_sent": published.accepted.len(),
            "burst_expected_deliveries": t.expected,
            "burst_deliveries": t.received,
            "burst_loss": t.loss,
            "burst_duplicates": t.duplicates,
            "burst_complete_connections": t.complete_connections,
            "burst_s": round3(burst_s),
            "burst_latency_ms": lat,
            "burst_publish_s": round3(publish_s),
            "burst_publish_latency_ms": post_lat,
            "ended_early": t.ended,
            "wait": if notifies == 0 { Value::Null } else { wait.as_str().into() },
        }
    });
    if let Some(results) = report.json["results"].as_object_mut() {
        results.extend(cpu.json_fields("burst_"));
    }
    Ok(report)
}
