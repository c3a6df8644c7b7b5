//! `cluster`: two herald nodes on one Redis; subscribers split over both, notifies sent
//! through the first. Reports loss, duplicates, the combined delivery rate and the
//! latency on each node: the second node's is the cross-node latency.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::cpu::PhaseMeters;
use crate::fanout::{group_names, tally};
use crate::latency::latency_json;
use crate::publish::{self, PublishConfig};
use crate::report::{latency_row, round3, thousands, Report};
use crate::subs::{SubConfig, Subscribers, WaitEnd};
use crate::target::Target;
use crate::{Common, ConnectOpts};

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The node notifies are sent to (`--url`); half the subscribers connect here.
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub connect: ConnectOpts,
    /// Base URL of the second node (same Redis); the other half connects here.
    #[arg(long)]
    pub peer_url: String,
    /// Subscribers per node.
    #[arg(long, default_value_t = 5000)]
    pub subscribers: usize,
    /// Notifies to send through the first node.
    #[arg(long, default_value_t = 20)]
    pub notifies: u64,
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

pub async fn run(a: ClusterArgs) -> Result<Report, String> {
    if a.subscribers == 0 || a.notifies == 0 {
        return Err("--subscribers and --notifies must be at least 1".into());
    }
    let targets = [Target::parse(&a.common.url)?, Target::parse(&a.peer_url)?];
    let groups = group_names(1);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.common.timeout);
    let nodes: Vec<Subscribers> = targets
        .iter()
        .map(|target| {
            Subscribers::spawn(SubConfig {
                target: target.clone(),
                count: a.subscribers,
                groups: groups.clone(),
                notifies: a.notifies,
                connect_concurrency: a.connect.connect_concurrency,
                connect_retries: a.connect.connect_retries,
                read_buffer: a.connect.read_buffer,
            })
        })
        .collect();
    for node in &nodes {
        node.wait_connected(deadline).await;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let connected: Vec<u64> = nodes.iter().map(Subscribers::connected).collect();

    let meters = PhaseMeters::start(a.common.hub_pid);
    let published = publish::spawn(PublishConfig {
        target: targets[0].clone(),
        groups: groups.clone(),
        notifies: a.notifies,
        rate: None,
        publishers: a.publishers,
        payload: a.payload,
        deadline: deadline.into_std(),
    })
    .await
    .map_err(|_| "the publisher thread died".to_string())?;
    let idle = Duration::from_secs_f64(a.idle_timeout);
    let mut waits = Vec::new();
    for node in &nodes {
        let expected = published.expected_deliveries(&node.shared.connected_per_group);
        waits.push(node.wait_delivered(expected, deadline, idle).await);
    }
    let cpu = meters.finish();
    let last_ns = nodes
        .iter()
        .map(|n| {
            n.shared
                .last_delivery_ns
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .max()
        .unwrap_or(0);
    let latencies: Vec<_> = nodes
        .iter()
        .map(|n| latency_json(&n.shared.latency.merged()))
        .collect();
    let mut tallies = Vec::new();
    for node in nodes {
        let results = node.finish().await;
        tallies.push(tally(&results, &published, 1));
    }
    let received: u64 = tallies.iter().map(|t| t.received).sum();
    let loss: u64 = tallies.iter().map(|t| t.loss).sum();
    let duplicates: u64 = tallies.iter().map(|t| t.duplicates).sum();
    let duration_s = if last_ns > published.first_send_ns && received > 0 {
        (last_ns - published.first_send_ns) as f64 / 1e9
    } else {
        0.0
    };
    let deliveries_per_s = if duration_s > 0.0 {
        (received as f64 / duration_s).round()
    } else {
        0.0
    };
    let sent = published.accepted.len() as u64;

    let mut report = Report::new(format!(
        "cluster: 2 nodes x {} subscribers, {} notifies through the first",
        a.subscribers, a.notifies
    ));
    report.ok = waits.iter().all(|w| *w == WaitEnd::Complete)
        && connected.iter().all(|c| *c == a.subscribers as u64)
        && sent == a.notifies
        && loss == 0
        && duplicates == 0;
    report.row(
        "nodes",
        format!("{} (publish), {}", a.common.url, a.peer_url),
    );
    report.row(
        "connections",
        format!(
            "{} + {} in {connect_s:.2} s",
            thousands(connected[0]),
            thousands(connected[1])
        ),
    );
    report.row(
        "notifies sent (202)",
        format!("{}/{}", thousands(sent), thousands(a.notifies)),
    );
    report.row("deliveries received", thousands(received));
    report.row("loss", thousands(loss));
    report.row("duplicates", thousands(duplicates));
    report.row(
        "deliveries/s (both nodes)",
        thousands(deliveries_per_s as u64),
    );
    report.row(
        "latency on the publishing node p50/p90/p99/max",
        latency_row(&latencies[0]),
    );
    report.row(
        "cross-node latency p50/p90/p99/max",
        latency_row(&latencies[1]),
    );
    report.cpu_rows(&cpu);
    report.row(
        "wait ended",
        format!("{} / {}", waits[0].as_str(), waits[1].as_str()),
    );
    report.json = json!({
        "scenario": "cluster",
        "ok": report.ok,
        "target": a.common.url,
        "peer": a.peer_url,
        "params": {
            "subscribers_per_node": a.subscribers,
            "notifies": a.notifies,
            "publishers": a.publishers,
            "payload": a.payload,
            "timeout_s": a.common.timeout,
        },
        "results": {
            "connections": connected,
            "connect_s": round3(connect_s),
            "notifies_sent": sent,
            "deliveries": received,
            "loss": loss,
            "duplicates": duplicates,
            "duration_s": round3(duration_s),
            "deliveries_per_s": deliveries_per_s,
            "latency_ms": latencies[0],
            "cross_node_latency_ms": latencies[1],
            "wait": [waits[0].as_str(), waits[1].as_str()],
        }
    });
    if let Some(results) = report.json["results"].as_object_mut() {
        results.extend(cpu.json_fields(""));
    }
    Ok(report)
}
