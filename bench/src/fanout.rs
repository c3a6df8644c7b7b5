//! `fanout`: N subscribers over G groups, M notifies, end-to-end latency and loss.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::cpu::PhaseMeters;
use crate::latency::{latency_json, now_ns};
use crate::publish::{self, PublishConfig, PublishResult};
use crate::report::round3;
use crate::report::{latency_row, thousands, Report};
use crate::subs::{SubConfig, SubResult, Subscribers, WaitEnd};
use crate::target::Target;
use crate::{Common, ConnectOpts};

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub connect: ConnectOpts,
    /// WebSocket subscribers to open.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Groups the subscribers are spread over (subscriber i joins group i % G).
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Notifies to send, round-robin over the groups.
    #[arg(long, default_value_t = 200)]
    pub notifies: u64,
    /// Total notifies per second; omit to send as fast as the publishers can.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Concurrent keep-alive HTTP publishers.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Length of the padding string in each notify's data (bytes).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Stop waiting when no delivery arrived for this long (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub idle_timeout: f64,
}

/// Group names unique to this run, so offsets and members of earlier runs don't mix in.
pub fn group_names(count: usize) -> Arc<Vec<String>> {
    let run = (now_ns() / 1_000_000) % 0xff_ffff;
    Arc::new((0..count).map(|g| format!("bench-{run:x}-{g}")).collect())
}

/// Delivery accounting over every subscriber.
pub struct Tally {
    pub connections: u64,
    pub expected: u64,
    /// Accepted seqs that arrived (once).
    pub received: u64,
    pub loss: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub unparsed: u64,
    /// Connections that received every accepted notify of their group.
    pub complete_connections: u64,
    pub ended: BTreeMap<String, u64>,
}

pub fn tally(results: &[SubResult], published: &PublishResult, groups: usize) -> Tally {
    let g = groups as u64;
    let mut accepted_by_group: Vec<Vec<u64>> = vec![Vec::new(); groups];
    for &seq in &published.accepted {
        accepted_by_group[(seq % g) as usize].push(seq / g);
    }
    let mut t = Tally {
        connections: 0,
        expected: 0,
        received: 0,
        loss: 0,
        duplicates: 0,
        foreign: 0,
        unparsed: 0,
        complete_connections: 0,
        ended: BTreeMap::new(),
    };
    for r in results.iter().filter(|r| r.connected) {
        t.connections += 1;
        let wanted = &accepted_by_group[r.group];
        let got = wanted.iter().filter(|&&idx| r.saw(idx)).count() as u64;
        t.expected += wanted.len() as u64;
        t.received += got;
        if got == wanted.len() as u64 {
            t.complete_connections += 1;
        }
        t.duplicates += r.duplicates;
        t.foreign += r.foreign;
        t.unparsed += r.unparsed;
        if let Some(e) = &r.ended {
            *t.ended.entry(e.clone()).or_default() += 1;
        }
    }
    t.loss = t.expected - t.received;
    t
}

pub async fn run(a: FanoutArgs) -> Result<Report, String> {
    if a.subscribers == 0 || a.groups == 0 || a.notifies == 0 {
        return Err("--subscribers, --groups and --notifies must be at least 1".into());
    }
    if a.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    let target = Target::parse(&a.common.url)?;
    let groups = group_names(a.groups);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.common.timeout);

    let subs = Subscribers::spawn(SubConfig {
        target: target.clone(),
        count: a.subscribers,
        groups: groups.clone(),
        notifies: a.notifies,
        connect_concurrency: a.connect.connect_concurrency,
        connect_retries: a.connect.connect_retries,
        read_buffer: a.connect.read_buffer,
    });
    subs.wait_connected(deadline).await;
    let connect_s = started.elapsed().as_secs_f64();
    let connected = subs.connected();

    let meters = PhaseMeters::start(a.common.hub_pid);
    let published = publish::spawn(PublishConfig {
        target,
        groups: groups.clone(),
        notifies: a.notifies,
        rate: a.rate,
        publishers: a.publishers,
        payload: a.payload,
        deadline: deadline.into_std(),
    })
    .await
    .map_err(|_| "the publisher thread died".to_string())?;
    let expected = published.expected_deliveries(&subs.shared.connected_per_group);
    eprintln!(
        "published {} notifies; waiting for {expected} deliveries",
        published.accepted.len()
    );
    let idle = Duration::from_secs_f64(a.idle_timeout);
    let wait = subs.wait_delivered(expected, deadline, idle).await;
    let cpu = meters.finish();
    let last_ns = subs.shared.last_delivery_ns.load(Relaxed);
    let retries = subs.shared.retries.load(Relaxed);
    let failed = subs.shared.failed.load(Relaxed);
    let connect_errors = subs
        .shared
        .connect_errors
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    let latency = subs.shared.latency.merged();
    let results = subs.finish().await;
    let t = tally(&results, &published, a.groups);

    let duration_s = if last_ns > published.first_send_ns && t.received > 0 {
        (last_ns - published.first_send_ns) as f64 / 1e9
    } else {
        0.0
    };
    let deliveries_per_s = if duration_s > 0.0 {
        (t.received as f64 / duration_s).round()
    } else {
        0.0
    };
    let publish_s = published
        .last_reply_ns
        .saturating_sub(published.first_send_ns) as f64
        / 1e9;
    let sent = published.accepted.len() as u64;
    let lat = latency_json(&latency);
    let post_lat = published.latency.as_ref().map_or(Value::Null, latency_json);

    let mut report = Report::new(format!(
        "fanout: {} subscribers x {} groups, {} notifies{}",
        a.subscribers,
        a.groups,
        a.notifies,
        a.rate
            .map_or(" as fast as possible".to_string(), |r| format!(" at {r}/s"))
    ));
    report.ok = wait == WaitEnd::Complete
        && connected == a.subscribers as u64
        && sent == a.notifies
        && t.loss == 0
        && t.duplicates == 0;
    report.row("target", &a.common.url);
    report.row(
        "connections",
        format!(
            "{}/{} in {connect_s:.2} s ({failed} failed, {retries} retries)",
            thousands(connected),
            thousands(a.subscribers as u64)
        ),
    );
    report.row(
        "notifies sent (202)",
        format!(
            "{}/{} ({} non-202, {} errors) in {publish_s:.3} s",
            thousands(sent),
            thousands(a.notifies),
            published.non_202,
            published.errors
        ),
    );
    report.row("hub-reported recipients", thousands(published.recipients));
    report.row("expected deliveries", thousands(t.expected));
    report.row("deliveries received", thousands(t.received));
    report.row("loss", thousands(t.loss));
    report.row("duplicates", thousands(t.duplicates));
    if t.foreign + t.unparsed > 0 {
        report.row(
            "foreign / unparsed frames",
            format!("{} / {}", t.foreign, t.unparsed),
        );
    }
    report.row(
        "duration (first send -> last delivery)",
        format!("{duration_s:.3} s"),
    );
    report.row("deliveries/s", thousands(deliveries_per_s as u64));
    report.row("latency p50/p90/p99/max", latency_row(&lat));
    report.row(
        "POST /notify latency p50/p90/p99/max",
        latency_row(&post_lat),
    );
    report.cpu_rows(&cpu);
    if !t.ended.is_empty() {
        report.row("connections ended early", format!("{:?}", t.ended));
    }
    if !connect_errors.is_empty() {
        report.row("connect errors", format!("{connect_errors:?}"));
    }
    if let Some(e) = &published.first_error {
        report.row("first publish error", e);
    }
    report.row("wait ended", wait.as_str());

    report.json = json!({
        "scenario": "fanout",
        "ok": report.ok,
        "target": a.common.url,
        "params": {
            "subscribers": a.subscribers,
            "groups": a.groups,
            "notifies": a.notifies,
            "rate": a.rate,
            "publishers": a.publishers,
            "payload": a.payload,
            "timeout_s": a.common.timeout,
        },
        "results": {
            "connections": connected,
            "connect_failed": failed,
            "connect_retries": retries,
            "connect_s": round3(connect_s),
            "notifies_sent": sent,
            "notifies_non_202": published.non_202,
            "notify_errors": published.errors,
            "statuses": published.statuses,
            "hub_recipients": published.recipients,
            "expected_deliveries": t.expected,
            "deliveries": t.received,
            "loss": t.loss,
            "duplicates": t.duplicates,
            "foreign": t.foreign,
            "unparsed": t.unparsed,
            "duration_s": round3(duration_s),
            "deliveries_per_s": deliveries_per_s,
            "latency_ms": lat,
            "publish_s": round3(publish_s),
            "publish_latency_ms": post_lat,
            "ended_early": t.ended,
            "connect_errors": connect_errors,
            "wait": wait.as_str(),
        }
    });
    if let Some(results) = report.json["results"].as_object_mut() {
        results.extend(cpu.json_fields(""));
    }
    Ok(report)
}
