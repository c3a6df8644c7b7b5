//! `conns`: the hub's memory per idle connection, and after a burst of notifies.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{sleep, Instant};

use crate::cpu::{CpuUse, PhaseMeters};
use crate::fanout::{group_names, subscribe, tally, wait_delivered};
use crate::latency::{now_ns, Latency};
use crate::procfs::rss_kib;
use crate::publish::{self, PublishConfig, PublishResult};
use crate::report::{round1, round3, Outcome, Prefixed, Report};
use crate::subs::{Subscribers, WaitEnd};
use crate::target::Target;
use crate::ConnectOpts;

/// The arguments; serialised, the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct ConnsArgs {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    #[serde(skip)]
    pub url: String,
    /// Give up (and report what was reached) after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    #[serde(rename = "timeout_s")]
    pub timeout: f64,
    /// PID of the hub process, whose VmRSS is read from /proc/PID/status.
    #[arg(long)]
    #[serde(skip)]
    pub hub_pid: u32,
    #[command(flatten)]
    #[serde(skip)]
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
    #[serde(skip)]
    pub publishers: usize,
    /// Padding bytes in each burst notify.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Seconds to let the hub settle before each RSS reading.
    #[arg(long, default_value_t = 2.0)]
    #[serde(skip)]
    pub settle: f64,
}

/// Runs `conns`: RSS before, with every connection idle, after a burst and after close.
pub async fn run(a: ConnsArgs) -> Result<Report, String> {
    if a.connections == 0 || a.groups == 0 {
        return Err("--connections and --groups must be at least 1".into());
    }
    let hub = Hub {
        target: Target::parse(&a.url)?,
        pid: a.hub_pid,
        settle: Duration::from_secs_f64(a.settle),
    };
    let groups = group_names(a.groups);
    let notifies = a.burst * a.groups as u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.timeout);

    let rss_before = rss_kib(hub.pid)?;
    let subs = subscribe(&hub.target, a.connections, &groups, notifies, &a.connect);
    let connected = subs.wait_connected(deadline).await;
    let connect_s = started.elapsed().as_secs_f64();
    let rss_idle = hub.settled_rss().await?;
    eprintln!("hub RSS {rss_before} KiB before, {rss_idle} KiB with {connected} idle connections");

    let burst = if notifies > 0 && connected > 0 {
        Some(burst(&a, &hub, &subs, groups, notifies, deadline).await?)
    } else {
        None
    };
    let ended_before_close = subs.shared.ended_early.load(Relaxed);
    let latency = Latency::of(&subs.shared.latency.merged());
    let subs_seen = subs.finish().await;
    let rss_closed = hub.settled_rss().await.ok();

    let (published, wait, burst_s, rss_burst, cpu) = match burst {
        Some(b) => (b.published, b.wait, b.seconds, Some(b.rss), b.cpu),
        None => (
            PublishResult::default(),
            WaitEnd::Timeout,
            0.0,
            None,
            CpuUse::default(),
        ),
    };
    let t = tally(&subs_seen, &published, a.groups);
    let results = ConnsResults {
        connections: connected,
        connect_s: round3(connect_s),
        connects_per_s: round1(connected as f64 / connect_s.max(1e-9)),
        rss_before_kib: rss_before,
        rss_idle_kib: rss_idle,
        rss_after_burst_kib: rss_burst,
        rss_after_close_kib: rss_closed,
        rss_per_conn_idle_kib: per_conn(rss_idle, rss_before, connected),
        rss_per_conn_after_burst_kib: rss_burst.and_then(|r| per_conn(r, rss_before, connected)),
        burst_notifies_sent: published.accepted.len() as u64,
        burst_expected_deliveries: t.expected,
        burst_deliveries: t.received,
        burst_loss: t.loss,
        burst_duplicates: t.duplicates,
        burst_complete_connections: t.complete_connections,
        burst_s: round3(burst_s),
        burst_latency_ms: latency,
        burst_publish_s: round3(published.publish_s()),
        burst_publish_latency_ms: published.latency.as_ref().map(Latency::of),
        ended_early: t.ended,
        wait: (notifies > 0).then_some(wait),
        cpu: Prefixed("burst_", cpu),
    };
    let ok = connected == a.connections as u64
        && (notifies == 0 || (wait == WaitEnd::Complete && results.burst_loss == 0))
        && ended_before_close == 0;
    Ok(report(&a, &results, ok))
}

/// The hub whose memory is measured.
struct Hub {
    target: Target,
    pid: u32,
    /// How long to let it settle before a reading.
    settle: Duration,
}

impl Hub {
    /// VmRSS, KiB, after letting the hub settle.
    async fn settled_rss(&self) -> Result<u64, String> {
        sleep(self.settle).await;
        rss_kib(self.pid)
    }
}

/// What the burst of notifies did.
struct Burst {
    published: PublishResult,
    wait: WaitEnd,
    /// First send to last delivery.
    seconds: f64,
    /// The hub's RSS once the burst was delivered.
    rss: u64,
    cpu: CpuUse,
}

/// Sends `notifies` round-robin over `groups` and waits for every delivery.
async fn burst(
    a: &ConnsArgs,
    hub: &Hub,
    subs: &Subscribers,
    groups: Arc<Vec<String>>,
    notifies: u64,
    deadline: Instant,
) -> Result<Burst, String> {
    let meters = PhaseMeters::start(Some(hub.pid));
    let burst_start = now_ns();
    let published = publish::spawn(PublishConfig {
        target: hub.target.clone(),
        groups,
        notifies,
        rate: None,
        publishers: a.publishers,
        payload: a.payload,
        batch: 1,
        deadline: deadline.into_std(),
    })
    .await?;
    let wait = wait_delivered(subs, &published, deadline, Duration::from_secs(10)).await;
    let cpu = meters.finish();
    let last = subs.shared.last_delivery_ns.load(Relaxed);
    Ok(Burst {
        published,
        wait,
        seconds: last.saturating_sub(burst_start) as f64 / 1e9,
        rss: hub.settled_rss().await?,
        cpu,
    })
}

/// RSS growth per connection over `base`, KiB.
fn per_conn(rss: u64, base: u64, conns: u64) -> Option<f64> {
    (conns > 0).then(|| round3(rss.saturating_sub(base) as f64 / conns as f64))
}

/// What a `conns` run measured: the `results` of its JSON line and its table.
#[derive(Serialize)]
struct ConnsResults {
    connections: u64,
    connect_s: f64,
    connects_per_s: f64,
    rss_before_kib: u64,
    /// With every connection open and idle.
    rss_idle_kib: u64,
    rss_after_burst_kib: Option<u64>,
    rss_after_close_kib: Option<u64>,
    rss_per_conn_idle_kib: Option<f64>,
    rss_per_conn_after_burst_kib: Option<f64>,
    burst_notifies_sent: u64,
    burst_expected_deliveries: u64,
    burst_deliveries: u64,
    burst_loss: u64,
    burst_duplicates: u64,
    /// Connections that received every notify of their group.
    burst_complete_connections: u64,
    /// First send to last delivery.
    burst_s: f64,
    burst_latency_ms: Latency,
    burst_publish_s: f64,
    burst_publish_latency_ms: Option<Latency>,
    ended_early: BTreeMap<String, u64>,
    /// How waiting for the burst ended; `null` without a burst.
    wait: Option<WaitEnd>,
    #[serde(flatten)]
    cpu: Prefixed<CpuUse>,
}

fn report(a: &ConnsArgs, r: &ConnsResults, ok: bool) -> Report {
    let title = format!(
        "conns: {} idle connections over {} groups, burst of {} notifies per group",
        a.connections, a.groups, a.burst
    );
    let outcome = Outcome {
        scenario: "conns",
        ok,
        target: &a.url,
        peer: None,
        params: a,
        results: r,
    };
    let mut report = Report::new(title, &outcome);
    report.note("burst bottleneck", r.cpu.1.bottleneck());
    report
}
