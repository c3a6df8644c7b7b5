//! `fanout`: N subscribers over G groups, M notifies, end-to-end latency and loss.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::cpu::{CpuUse, PhaseMeters};
use crate::latency::{now_ns, Latency};
use crate::publish::{self, PublishConfig, PublishResult};
use crate::report::{round3, Outcome, Report};
use crate::subs::{SubConfig, SubResult, Subscribers, WaitEnd};
use crate::target::Target;
use crate::{Common, ConnectOpts, SendOpts};

/// The arguments; serialised, the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct FanoutArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(skip)]
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
    #[command(flatten)]
    #[serde(flatten)]
    pub send: SendOpts,
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

/// Runs `fanout`: connect the subscribers, publish, wait for every delivery, report.
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

    let subs = subscribe(&target, a.subscribers, &groups, a.notifies, &a.connect);
    let connected = subs.wait_connected(deadline).await;
    let connect_s = started.elapsed().as_secs_f64();

    let meters = PhaseMeters::start(a.common.hub_pid);
    let published = publish::spawn(PublishConfig {
        target,
        groups,
        notifies: a.notifies,
        rate: a.rate,
        publishers: a.send.publishers,
        payload: a.send.payload,
        batch: a.send.batch,
        deadline: deadline.into_std(),
    })
    .await?;
    let idle = Duration::from_secs_f64(a.send.idle_timeout);
    let wait = wait_delivered(&subs, &published, deadline, idle).await;
    let cpu = meters.finish();
    let connect = (connected, connect_s);
    let results = FanoutResults::collect(subs, &published, connect, wait, cpu, a.groups).await;
    Ok(report(&a, &results, &published))
}

/// Spawns `count` subscribers of `target` over `groups` (subscriber i joins group
/// i % G) that expect seqs `0..notifies`; each scenario then waits for them to connect.
pub fn subscribe(
    target: &Target,
    count: usize,
    groups: &Arc<Vec<String>>,
    notifies: u64,
    connect: &ConnectOpts,
) -> Subscribers {
    Subscribers::spawn(SubConfig {
        target: target.clone(),
        count,
        groups: groups.clone(),
        notifies,
        connect_concurrency: connect.connect_concurrency,
        connect_retries: connect.connect_retries,
        read_buffer: connect.read_buffer,
    })
}

/// Waits until `subs` received every delivery `published` is due to cause.
pub async fn wait_delivered(
    subs: &Subscribers,
    published: &PublishResult,
    deadline: Instant,
    idle: Duration,
) -> WaitEnd {
    let expected = published.expected_deliveries(&subs.shared.connected_per_group);
    eprintln!(
        "published {} notifies; waiting for {expected} deliveries",
        published.accepted.len()
    );
    subs.wait_delivered(expected, deadline, idle).await
}

/// From the first send to the last delivery, and deliveries per second over it (both 0
/// when nothing arrived).
pub fn delivery_rate(first_send_ns: u64, last_delivery_ns: u64, received: u64) -> (f64, f64) {
    if last_delivery_ns <= first_send_ns || received == 0 {
        return (0.0, 0.0);
    }
    let duration_s = (last_delivery_ns - first_send_ns) as f64 / 1e9;
    (round3(duration_s), (received as f64 / duration_s).round())
}

/// What a `fanout` run measured: the `results` of its JSON line and its table.
#[derive(Serialize)]
struct FanoutResults {
    connections: u64,
    connect_failed: u64,
    connect_retries: u64,
    connect_s: f64,
    notifies_sent: u64,
    notifies_non_202: u64,
    notify_errors: u64,
    statuses: BTreeMap<u16, u64>,
    hub_recipients: u64,
    expected_deliveries: u64,
    deliveries: u64,
    loss: u64,
    duplicates: u64,
    foreign: u64,
    unparsed: u64,
    /// First send to last delivery.
    duration_s: f64,
    deliveries_per_s: f64,
    latency_ms: Latency,
    /// First send to last reply.
    publish_s: f64,
    publish_latency_ms: Option<Latency>,
    ended_early: BTreeMap<String, u64>,
    connect_errors: BTreeMap<String, u64>,
    wait: WaitEnd,
    #[serde(flatten)]
    cpu: CpuUse,
}

impl FanoutResults {
    /// Closes the subscribers and counts what they received of what was published.
    async fn collect(
        subs: Subscribers,
        published: &PublishResult,
        (connected, connect_s): (u64, f64),
        wait: WaitEnd,
        cpu: CpuUse,
        groups: usize,
    ) -> Self {
        let shared = subs.shared.clone();
        let connect_errors = shared
            .connect_errors
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let latency = Latency::of(&shared.latency.merged());
        let t = tally(&subs.finish().await, published, groups);
        let last_ns = shared.last_delivery_ns.load(Relaxed);
        let (duration_s, deliveries_per_s) =
            delivery_rate(published.first_send_ns, last_ns, t.received);
        Self {
            connections: connected,
            connect_failed: shared.failed.load(Relaxed),
            connect_retries: shared.retries.load(Relaxed),
            connect_s: round3(connect_s),
            notifies_sent: published.accepted.len() as u64,
            notifies_non_202: published.non_202,
            notify_errors: published.errors,
            statuses: published.statuses.clone(),
            hub_recipients: published.recipients,
            expected_deliveries: t.expected,
            deliveries: t.received,
            loss: t.loss,
            duplicates: t.duplicates,
            foreign: t.foreign,
            unparsed: t.unparsed,
            duration_s,
            deliveries_per_s,
            latency_ms: latency,
            publish_s: round3(published.publish_s()),
            publish_latency_ms: published.latency.as_ref().map(Latency::of),
            ended_early: t.ended,
            connect_errors,
            wait,
            cpu,
        }
    }
}

fn report(a: &FanoutArgs, r: &FanoutResults, published: &PublishResult) -> Report {
    let pace = a
        .rate
        .map_or(" as fast as possible".to_string(), |r| format!(" at {r}/s"));
    let title = format!(
        "fanout: {} subscribers x {} groups, {} notifies{pace}",
        a.subscribers, a.groups, a.notifies
    );
    let ok = r.wait == WaitEnd::Complete
        && r.connections == a.subscribers as u64
        && r.notifies_sent == a.notifies
        && r.loss == 0
        && r.duplicates == 0;
    let mut report = Report::new(
        title,
        &Outcome {
            scenario: "fanout",
            ok,
            target: &a.common.url,
            peer: None,
            params: a,
            results: r,
        },
    );
    report.note("bottleneck", r.cpu.bottleneck());
    if let Some(e) = &published.first_error {
        report.note("first publish error", e);
    }
    report
}
