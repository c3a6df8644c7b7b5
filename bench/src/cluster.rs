//! `cluster`: two herald nodes on one Redis; subscribers split over both, notifies sent
//! through the first. Reports loss, duplicates, the combined delivery rate and the
//! latency on each node: the second node's is the cross-node latency.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::cpu::{CpuUse, PhaseMeters};
use crate::fanout::{delivery_rate, group_names, subscribe, tally, wait_delivered};
use crate::latency::Latency;
use crate::publish::{self, PublishConfig, PublishResult};
use crate::report::{round3, Outcome, Report};
use crate::subs::{Subscribers, WaitEnd};
use crate::target::Target;
use crate::{Common, ConnectOpts, SendOpts};

/// The arguments; serialised, the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct ClusterArgs {
    /// The node notifies are sent to (`--url`); half the subscribers connect here.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(skip)]
    pub connect: ConnectOpts,
    /// Base URL of the second node (same Redis); the other half connects here.
    #[arg(long)]
    #[serde(skip)]
    pub peer_url: String,
    /// Subscribers per node.
    #[arg(long, default_value_t = 5000)]
    #[serde(rename = "subscribers_per_node")]
    pub subscribers: usize,
    /// Notifies to send through the first node.
    #[arg(long, default_value_t = 20)]
    pub notifies: u64,
    #[command(flatten)]
    #[serde(flatten)]
    pub send: SendOpts,
}

/// Runs `cluster`: subscribers on both nodes, notifies through the first, report.
pub async fn run(a: ClusterArgs) -> Result<Report, String> {
    if a.subscribers == 0 || a.notifies == 0 {
        return Err("--subscribers and --notifies must be at least 1".into());
    }
    let targets = [Target::parse(&a.common.url)?, Target::parse(&a.peer_url)?];
    let groups = group_names(1);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.common.timeout);
    // Both nodes' subscribers connect at the same time.
    let nodes = targets
        .each_ref()
        .map(|target| subscribe(target, a.subscribers, &groups, a.notifies, &a.connect));
    for node in &nodes {
        node.wait_connected(deadline).await;
    }
    let connected = nodes.each_ref().map(Subscribers::connected);
    let connect_s = started.elapsed().as_secs_f64();

    let meters = PhaseMeters::start(a.common.hub_pid);
    let [first, _] = targets;
    let published = publish::spawn(PublishConfig {
        target: first,
        groups,
        notifies: a.notifies,
        rate: None,
        publishers: a.send.publishers,
        payload: a.send.payload,
        batch: a.send.batch,
        deadline: deadline.into_std(),
    })
    .await?;
    let idle = Duration::from_secs_f64(a.send.idle_timeout);
    let mut wait = [WaitEnd::Timeout; 2];
    for (node, end) in nodes.iter().zip(&mut wait) {
        *end = wait_delivered(node, &published, deadline, idle).await;
    }
    let cpu = meters.finish();
    let results = collect(nodes, &published, (connected, connect_s), wait, cpu).await;
    Ok(report(&a, &results))
}

/// What a `cluster` run measured: the `results` of its JSON line and its table. Pairs
/// are [publishing node, peer].
#[derive(Serialize)]
struct ClusterResults {
    connections: [u64; 2],
    connect_s: f64,
    notifies_sent: u64,
    /// On both nodes.
    deliveries: u64,
    loss: u64,
    duplicates: u64,
    /// First send to last delivery on either node.
    duration_s: f64,
    deliveries_per_s: f64,
    /// On the publishing node.
    latency_ms: Latency,
    /// On the peer: publish, Redis, the peer's delivery.
    cross_node_latency_ms: Latency,
    wait: [WaitEnd; 2],
    #[serde(flatten)]
    cpu: CpuUse,
}

/// Closes both nodes' subscribers and counts what they received of what was published.
async fn collect(
    nodes: [Subscribers; 2],
    published: &PublishResult,
    (connections, connect_s): ([u64; 2], f64),
    wait: [WaitEnd; 2],
    cpu: CpuUse,
) -> ClusterResults {
    let last_ns = nodes
        .iter()
        .map(|n| n.shared.last_delivery_ns.load(Relaxed))
        .max()
        .unwrap_or(0);
    let [latency_ms, cross_node_latency_ms] = nodes
        .each_ref()
        .map(|n| Latency::of(&n.shared.latency.merged()));
    let mut tallies = Vec::new();
    for node in nodes {
        tallies.push(tally(&node.finish().await, published, 1));
    }
    let deliveries: u64 = tallies.iter().map(|t| t.received).sum();
    let (duration_s, deliveries_per_s) =
        delivery_rate(published.first_send_ns, last_ns, deliveries);
    ClusterResults {
        connections,
        connect_s: round3(connect_s),
        notifies_sent: published.accepted.len() as u64,
        deliveries,
        loss: tallies.iter().map(|t| t.loss).sum(),
        duplicates: tallies.iter().map(|t| t.duplicates).sum(),
        duration_s,
        deliveries_per_s,
        latency_ms,
        cross_node_latency_ms,
        wait,
        cpu,
    }
}

fn report(a: &ClusterArgs, r: &ClusterResults) -> Report {
    let title = format!(
        "cluster: 2 nodes x {} subscribers, {} notifies through the first",
        a.subscribers, a.notifies
    );
    let ok = r.wait.iter().all(|w| *w == WaitEnd::Complete)
        && r.connections.iter().all(|c| *c == a.subscribers as u64)
        && r.notifies_sent == a.notifies
        && r.loss == 0
        && r.duplicates == 0;
    let outcome = Outcome {
        scenario: "cluster",
        ok,
        target: &a.common.url,
        peer: Some(&a.peer_url),
        params: a,
        results: r,
    };
    let mut report = Report::new(title, &outcome);
    report.note("bottleneck", r.cpu.bottleneck());
    report
}
