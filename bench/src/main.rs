//! herald-bench: load tool for herald (and anything with the same URL contract).
//!
//! Talks to a running hub over loopback, prints a human-readable table and then exactly
//! one line of JSON. See bench/README.md.

#![forbid(unsafe_code)]

mod chart;
mod cluster;
mod conns;
mod cpu;
mod fanout;
mod http;
mod ingest;
mod latency;
mod procfs;
mod publish;
mod report;
mod soak;
mod subs;
mod summary;
mod target;
mod ws;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    version,
    about = "Load tool for herald: fan-out, idle connections, ingest, two-node cluster"
)]
struct Cli {
    /// Client runtime threads for the subscribers: 1 = a current-thread runtime (the
    /// cheapest on one core); more = a multi-thread runtime with that many workers.
    /// Publishers always get a thread of their own.
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// N subscribers over G groups receive M notifies: throughput, latency, loss.
    Fanout(fanout::FanoutArgs),
    /// Hub memory per idle connection and after a burst of notifies.
    Conns(conns::ConnsArgs),
    /// POST /notify throughput into a group with no members.
    Ingest(ingest::IngestArgs),
    /// Many connections for minutes: steady notifies, churn; hub RSS and gauge stay flat?
    Soak(soak::SoakArgs),
    /// Two hubs on one Redis: subscribers on both, notifies through the first; loss and
    /// cross-node latency.
    Cluster(cluster::ClusterArgs),
    /// Regenerate the BENCHMARKS.md table from a bench/run.sh results file.
    Summary(summary::SummaryArgs),
}

/// Options every load subcommand takes; of these only `timeout_s` is among the `params`
/// of the JSON line (`url` is its `target`).
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Common {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080 (loopback only).
    #[arg(long)]
    #[serde(skip)]
    pub url: String,
    /// Give up after this many seconds and report what was reached (exit status 2).
    #[arg(long, default_value_t = 60.0)]
    #[serde(rename = "timeout_s")]
    pub timeout: f64,
    /// PID of the hub, to report its CPU use during the measurement.
    #[arg(long)]
    #[serde(skip)]
    pub hub_pid: Option<u32>,
}

/// How subscribers connect.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnectOpts {
    /// WebSocket handshakes in flight at once.
    #[arg(long, default_value_t = 500)]
    pub connect_concurrency: usize,
    /// Retries per connection (with backoff) before it counts as failed.
    #[arg(long, default_value_t = 5)]
    pub connect_retries: u32,
    /// Initial read buffer per connection, bytes (grows for larger frames).
    #[arg(long, default_value_t = 4096)]
    pub read_buffer: usize,
}

/// How `fanout` and `cluster` send their notifies, and how long they wait for a
/// delivery; `publishers` and `payload` are among the `params` of the JSON line.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct SendOpts {
    /// Concurrent keep-alive HTTP publishers.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,
    /// Length of the padding string in each notify's data (bytes).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Notifies per request: 1 sends `POST /notify`, more send `POST /notify/batch` with
    /// that many consecutive notifies (each still to its own round-robin group).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Stop waiting when no delivery arrived for this long (seconds).
    #[arg(long, default_value_t = 10.0)]
    #[serde(skip)]
    pub idle_timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Summary(args) = cli.command {
        return match summary::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 16_384 => eprintln!("warning: open-file limit is only {n}"),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the open-file limit: {e}"),
    }
    let runtime = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fanout(a) => fanout::run(a).await,
            Command::Conns(a) => conns::run(a).await,
            Command::Ingest(a) => ingest::run(a).await,
            Command::Soak(a) => soak::run(a).await,
            Command::Cluster(a) => cluster::run(a).await,
            Command::Summary(_) => unreachable!("handled above"),
        }
    });
    // Don't wait for stray tasks (e.g. a close frame to a hub that stopped reading).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(report) => {
            report.print();
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
