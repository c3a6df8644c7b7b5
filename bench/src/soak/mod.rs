//! `soak`: many connections over a long run, with notifications at a steady rate and
//! connections closed and reopened every second. The hub's RSS and its
//! `herald_connections` gauge are sampled throughout: both should stay flat.
//!
//! The connections are of two kinds. *Steady* ones stay open for the whole run and must
//! receive every accepted notification of their group (the zero-loss check). *Churning*
//! ones are closed and reopened in turn, `--churn` of all connections per second, each
//! on its own fixed schedule (no coordinator), so the hub sees a constant stream of
//! handshakes and closes next to the steady traffic.

mod churn;
mod sample;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::fanout::{group_names, subscribe, tally, wait_delivered};
use crate::latency::Latency;
use crate::procfs::rss_kib;
use crate::publish::{self, PublishConfig, PublishResult};
use crate::report::{round1, round3, Outcome, Report};
use crate::subs::WaitEnd;
use crate::target::Target;
use crate::ConnectOpts;
use churn::Churning;
use sample::{sample_until, slope_kib_per_min, Sample};

/// The arguments; serialised, the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct SoakArgs {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    #[serde(skip)]
    pub url: String,
    /// Where `GET /metrics` is served, if not on --url (herald's --metrics-listen).
    #[arg(long)]
    #[serde(skip)]
    pub metrics_url: Option<String>,
    /// PID of the hub process, whose VmRSS is read from /proc/PID/status.
    #[arg(long)]
    #[serde(skip)]
    pub hub_pid: u32,
    #[command(flatten)]
    #[serde(skip)]
    pub connect: ConnectOpts,
    /// WebSocket connections held open (steady and churning together).
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// Groups the connections are spread over (connection i joins group i % G).
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// Length of the run once every connection is open, seconds.
    #[arg(long, default_value_t = 600.0)]
    #[serde(rename = "duration_s")]
    pub duration: f64,
    /// Notifications per second, round-robin over the groups.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Fraction of all connections closed and reopened every second.
    #[arg(long, default_value_t = 0.01)]
    #[serde(rename = "churn_per_s")]
    pub churn: f64,
    /// Fraction of the connections that churn; the rest stay open and are checked for loss.
    #[arg(long, default_value_t = 0.5)]
    #[serde(rename = "churning_fraction")]
    pub churning: f64,
    /// Seconds between RSS / gauge samples.
    #[arg(long, default_value_t = 5.0)]
    #[serde(rename = "sample_every_s")]
    pub sample_every: f64,
    /// Padding bytes in each notify.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

/// Runs `soak`: open everything, then churn, publish and sample for `--duration`.
pub async fn run(a: SoakArgs) -> Result<Report, String> {
    if a.connections == 0 || a.groups == 0 || !(a.duration > 0.0 && a.rate > 0.0) {
        return Err("--connections, --groups, --duration and --rate must be positive".into());
    }
    if !(0.0..=1.0).contains(&a.churning) || a.churn.is_nan() || a.churn < 0.0 {
        return Err("--churning must be within 0..1 and --churn not negative".into());
    }
    let target = Target::parse(&a.url)?;
    let metrics = Target::parse(a.metrics_url.as_deref().unwrap_or(&a.url))?;
    let groups = group_names(a.groups);
    let churners = ((a.connections as f64 * a.churning).round() as usize).min(a.connections);
    let steady = a.connections - churners;
    let notifies = (a.rate * a.duration).ceil() as u64;
    let rss_before = rss_kib(a.hub_pid)?;

    // Open everything: the steady connections, then the churning ones.
    let started = Instant::now();
    let connect_deadline = started + Duration::from_secs(300);
    let subs = subscribe(&target, steady, &groups, notifies, &a.connect);
    let steady_connected = subs.wait_connected(connect_deadline).await;
    let churning = Churning::open(
        &target,
        &a.connect,
        churners,
        a.connections as f64 * a.churn,
        |j| format!("/ws/{}", groups[(steady + j) % a.groups]),
        connect_deadline,
    )
    .await;
    let churners_open = churning.churn.opened.load(Relaxed);
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{steady_connected}/{steady} steady and {churners_open}/{churners} churning connections open in {connect_s:.1} s"
    );

    // The steady phase: churn, publish, sample.
    let phase = Instant::now();
    let end = phase + Duration::from_secs_f64(a.duration);
    churning.begin(phase);
    let published = publish::spawn(PublishConfig {
        target,
        groups,
        notifies,
        rate: Some(a.rate),
        publishers: 2,
        payload: a.payload,
        batch: 1,
        deadline: end.into_std(),
    });
    let every = Duration::from_secs_f64(a.sample_every.max(0.5));
    let samples = sample_until(a.hub_pid, &metrics, phase, every, end).await?;
    let published = published.await?;

    // The end: every steady connection must have had every notification.
    let after = Instant::now() + Duration::from_secs(30);
    let wait = wait_delivered(&subs, &published, after, Duration::from_secs(10)).await;
    let per_second = churning.per_second;
    let churn = churning.stop().await;
    let ended_early = subs.shared.ended_early.load(Relaxed);
    let latency = Latency::of(&subs.shared.latency.merged());
    let t = tally(&subs.finish().await, &published, a.groups);

    let results = SoakResults {
        steady_connections: steady_connected,
        churning_connections: churners_open,
        connect_s: round3(connect_s),
        reopened: churn.reopened.load(Relaxed),
        reopen_failed: churn.failed.load(Relaxed),
        churning_closed_by_hub: churn.ended_by_hub.load(Relaxed),
        churning_deliveries: churn.frames.load(Relaxed),
        notifies_sent: published.accepted.len() as u64,
        notifies_non_202: published.non_202,
        notify_errors: published.errors,
        expected_deliveries: t.expected,
        deliveries: t.received,
        loss: t.loss,
        duplicates: t.duplicates,
        ended_early: t.ended,
        latency_ms: latency,
        rss: Rss::of(rss_before, &samples),
        samples: samples.iter().map(Sample::row).collect(),
        wait,
    };
    let ok = steady_connected == steady as u64
        && churners_open == churners as u64
        && wait == WaitEnd::Complete
        && results.notifies_sent == notifies
        && results.loss == 0
        && results.duplicates == 0
        && ended_early == 0
        && results.reopen_failed == 0
        && results.churning_closed_by_hub == 0
        && results.rss.scraped == samples.len();
    Ok(report(&a, &results, ok, per_second, &published))
}

/// What a `soak` run measured: the `results` of its JSON line and its table.
#[derive(Serialize)]
struct SoakResults {
    steady_connections: u64,
    churning_connections: u64,
    connect_s: f64,
    reopened: u64,
    /// Opens (first or re-) that failed every retry.
    reopen_failed: u64,
    churning_closed_by_hub: u64,
    churning_deliveries: u64,
    notifies_sent: u64,
    notifies_non_202: u64,
    notify_errors: u64,
    /// Of the steady connections.
    expected_deliveries: u64,
    deliveries: u64,
    loss: u64,
    duplicates: u64,
    ended_early: BTreeMap<String, u64>,
    latency_ms: Latency,
    #[serde(flatten)]
    rss: Rss,
    /// `[at_s, rss_kib, herald_connections]` every `--sample-every` seconds.
    samples: Vec<(f64, u64, Option<u64>)>,
    wait: WaitEnd,
}

/// The hub's memory and connection gauge over the steady phase.
#[derive(Serialize)]
struct Rss {
    rss_before_kib: u64,
    rss_start_kib: u64,
    rss_end_kib: u64,
    rss_max_kib: u64,
    rss_slope_kib_per_min: Option<f64>,
    connections_gauge_min: Option<u64>,
    connections_gauge_max: Option<u64>,
    /// Samples whose gauge scrape worked.
    #[serde(skip)]
    scraped: usize,
}

impl Rss {
    fn of(before: u64, samples: &[Sample]) -> Self {
        let gauges: Vec<u64> = samples.iter().filter_map(|s| s.gauge).collect();
        Self {
            rss_before_kib: before,
            rss_start_kib: samples.first().map_or(before, |s| s.rss_kib),
            rss_end_kib: samples.last().map_or(before, |s| s.rss_kib),
            rss_max_kib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(before),
            rss_slope_kib_per_min: slope_kib_per_min(samples).map(round1),
            connections_gauge_min: gauges.iter().min().copied(),
            connections_gauge_max: gauges.iter().max().copied(),
            scraped: gauges.len(),
        }
    }
}

fn report(
    a: &SoakArgs,
    r: &SoakResults,
    ok: bool,
    churn_per_second: f64,
    published: &PublishResult,
) -> Report {
    let title = format!(
        "soak: {} connections over {} groups for {:.0} s, {} notifies/s, {:.1} % churn/s",
        a.connections,
        a.groups,
        a.duration,
        a.rate,
        a.churn * 100.0
    );
    let outcome = Outcome {
        scenario: "soak",
        ok,
        target: &a.url,
        peer: None,
        params: a,
        results: r,
    };
    let mut report = Report::new(title, &outcome);
    report.note("reopened per second", format!("{churn_per_second:.0}"));
    if let Some(e) = &published.first_error {
        report.note("first publish error", e);
    }
    report
}
