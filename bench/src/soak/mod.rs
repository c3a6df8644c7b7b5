//! `soak`: many connections over a long run, with notifications at a steady rate and
//! connections closed and reopened every second. The hub's RSS and its
//! `herald_connections` gauge are sampled throughout: both should stay flat.
//!
//! The connections are of two kinds. *Steady* ones stay open for the whole run and must
//! receive every accepted notification of their group (the zero-loss check). *Churning*
//! ones are closed and reopened in turn, `--churn` of all connections per second, each
//! on its own fixed schedule (no coordinator), so the hub sees a constant stream of
//! handshakes and closes next to the steady traffic.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::fanout::{group_names, tally};
use crate::procfs::rss_kib;
use crate::publish::{self, PublishConfig};
use crate::report::{latency_row, round1, round3, thousands, Report};
use crate::subs::{SubConfig, Subscribers, WaitEnd};
use crate::target::Target;
use crate::ws::{ReadOutcome, WsClient};
use crate::ConnectOpts;

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    pub url: String,
    /// Where `GET /metrics` is served, if not on --url (herald's --metrics-listen).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// PID of the hub process, whose VmRSS is read from /proc/PID/status.
    #[arg(long)]
    pub hub_pid: u32,
    #[command(flatten)]
    pub connect: ConnectOpts,
    /// WebSocket connections held open (steady and churning together).
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// Groups the connections are spread over (connection i joins group i % G).
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// Length of the run once every connection is open, seconds.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
    /// Notifications per second, round-robin over the groups.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Fraction of all connections closed and reopened every second.
    #[arg(long, default_value_t = 0.01)]
    pub churn: f64,
    /// Fraction of the connections that churn; the rest stay open and are checked for loss.
    #[arg(long, default_value_t = 0.5)]
    pub churning: f64,
    /// Seconds between RSS / gauge samples.
    #[arg(long, default_value_t = 5.0)]
    pub sample_every: f64,
    /// Padding bytes in each notify.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
}

/// One reading of the hub.
#[derive(Clone, Copy)]
struct Sample {
    /// Seconds since the steady phase began.
    at_s: f64,
    rss_kib: u64,
    /// `herald_connections`, when the scrape worked.
    gauge: Option<u64>,
}

/// What the churning connections did, over all of them.
#[derive(Default)]
struct Churn {
    /// First opens that succeeded.
    opened: AtomicU64,
    reopened: AtomicU64,
    /// Opens (first or re-) that failed every retry.
    failed: AtomicU64,
    /// Closed by the hub (close frame or EOF) while we held them.
    ended_by_hub: AtomicU64,
    frames: AtomicU64,
}

pub async fn run(a: SoakArgs) -> Result<Report, String> {
    if a.connections == 0 || a.groups == 0 || !(a.duration > 0.0 && a.rate > 0.0) {
        return Err("--connections, --groups, --duration and --rate must be positive".into());
    }
    if !(0.0..=1.0).contains(&a.churning) || a.churn.is_nan() || a.churn < 0.0 {
        return Err("--churning must be within 0..1 and --churn not negative".into());
    }
    let target = Target::parse(&a.url)?;
    let metrics = Target::parse(a.metrics_url.as_deref().unwrap_or(&a.url))?;
    let pid = a.hub_pid;
    let rss = move || rss_kib(pid).map_err(|e| format!("cannot read /proc/{pid}/status: {e}"));
    let groups = group_names(a.groups);
    let churners = ((a.connections as f64 * a.churning).round() as usize).min(a.connections);
    let steady = a.connections - churners;
    let notifies = (a.rate * a.duration).ceil() as u64;
    let duration = Duration::from_secs_f64(a.duration);
    let rss_before = rss()?;

    let started = Instant::now();
    let connect_deadline = started + Duration::from_secs(300);
    let subs = Subscribers::spawn(SubConfig {
        target: target.clone(),
        count: steady,
        groups: groups.clone(),
        notifies,
        connect_concurrency: a.connect.connect_concurrency,
        connect_retries: a.connect.connect_retries,
        read_buffer: a.connect.read_buffer,
    });
    subs.wait_connected(connect_deadline).await;
    let steady_connected = subs.connected();

    // Churning connections: connection j is reopened every `period`, its first time
    // `j / per_second` into the steady phase, so `per_second` reopen each second.
    let per_second = a.connections as f64 * a.churn;
    let period = (per_second > 0.0 && churners > 0)
        .then(|| Duration::from_secs_f64(churners as f64 / per_second));
    let churn = Arc::new(Churn::default());
    let stop = CancellationToken::new();
    let (begin_tx, begin_rx) = watch::channel(None);
    let gate = Arc::new(Semaphore::new(a.connect.connect_concurrency.max(1)));
    let mut churn_tasks = tokio::task::JoinSet::new();
    for j in 0..churners {
        let churner = Churner {
            target: target.clone(),
            path: format!("/ws/{}", groups[(steady + j) % a.groups]),
            connect: a.connect.clone(),
            gate: gate.clone(),
            churn: churn.clone(),
            stop: stop.clone(),
        };
        let first = period.map_or(Duration::ZERO, |_| {
            Duration::from_secs_f64(j as f64 / per_second)
        });
        churn_tasks.spawn(churner.run(first, period, begin_rx.clone()));
    }
    while churn.opened.load(Relaxed) + churn.failed.load(Relaxed) < churners as u64
        && Instant::now() < connect_deadline
    {
        sleep(Duration::from_millis(100)).await;
    }
    let churners_open = churn.opened.load(Relaxed);
    let connect_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{steady_connected}/{steady} steady and {churners_open}/{churners} churning connections open in {connect_s:.1} s"
    );

    // The steady phase: churn, publish, sample.
    let phase = Instant::now();
    let end = phase + duration;
    let _ = begin_tx.send(Some(phase));
    let published = publish::spawn(PublishConfig {
        target: target.clone(),
        groups: groups.clone(),
        notifies,
        rate: Some(a.rate),
        publishers: 2,
        payload: a.payload,
        deadline: end.into_std(),
    });
    let mut samples = Vec::new();
    let every = Duration::from_secs_f64(a.sample_every.max(0.5));
    let mut next = phase;
    while next <= end {
        sleep_until(next).await;
        let at_s = phase.elapsed().as_secs_f64();
        let sample = Sample {
            at_s,
            rss_kib: rss()?,
            gauge: scrape_connections(&metrics).await,
        };
        eprintln!(
            "{:>6.0} s  RSS {} KiB  herald_connections {}",
            at_s,
            thousands(sample.rss_kib),
            sample.gauge.map_or("-".into(), |g| g.to_string())
        );
        samples.push(sample);
        next += every;
    }
    let published = published
        .await
        .map_err(|_| "the publisher thread died".to_string())?;
    let expected = published.expected_deliveries(&subs.shared.connected_per_group);
    let wait = subs
        .wait_delivered(
            expected,
            Instant::now() + Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await;
    stop.cancel();
    while churn_tasks.join_next().await.is_some() {}
    let ended_early = subs.shared.ended_early.load(Relaxed);
    let latency = subs.shared.latency.merged();
    let results = subs.finish().await;
    let t = tally(&results, &published, a.groups);

    let rss_start = samples.first().map_or(rss_before, |s| s.rss_kib);
    let rss_end = samples.last().map_or(rss_before, |s| s.rss_kib);
    let rss_max = samples
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(rss_before);
    let slope = slope_kib_per_min(&samples);
    let gauges: Vec<u64> = samples.iter().filter_map(|s| s.gauge).collect();
    let (gauge_min, gauge_max) = (gauges.iter().min(), gauges.iter().max());
    let sent = published.accepted.len() as u64;
    let lat = crate::latency::latency_json(&latency);
    let reopened = churn.reopened.load(Relaxed);
    let churn_failed = churn.failed.load(Relaxed);
    let ended_by_hub = churn.ended_by_hub.load(Relaxed);

    let mut report = Report::new(format!(
        "soak: {} connections over {} groups for {:.0} s, {} notifies/s, {:.1} % churn/s",
        a.connections,
        a.groups,
        a.duration,
        a.rate,
        a.churn * 100.0
    ));
    report.ok = steady_connected == steady as u64
        && churners_open == churners as u64
        && wait == WaitEnd::Complete
        && sent == notifies
        && t.loss == 0
        && t.duplicates == 0
        && ended_early == 0
        && churn_failed == 0
        && ended_by_hub == 0
        && gauges.len() == samples.len();
    report.row("target", &a.url);
    report.row(
        "connections",
        format!(
            "{}/{} steady + {}/{} churning, open in {connect_s:.1} s",
            thousands(steady_connected),
            thousands(steady as u64),
            thousands(churners_open),
            thousands(churners as u64)
        ),
    );
    report.row(
        "churn",
        format!(
            "{} reopened ({per_second:.0}/s), {churn_failed} failed, {ended_by_hub} closed by the hub",
            thousands(reopened)
        ),
    );
    report.row(
        "notifies sent (202)",
        format!(
            "{}/{} ({} non-202, {} errors)",
            thousands(sent),
            thousands(notifies),
            published.non_202,
            published.errors
        ),
    );
    report.row(
        "steady deliveries",
        format!(
            "{}/{} ({} loss, {} duplicates)",
            thousands(t.received),
            thousands(t.expected),
            thousands(t.loss),
            t.duplicates
        ),
    );
    report.row("churning deliveries", thousands(churn.frames.load(Relaxed)));
    report.row("latency p50/p90/p99/max", latency_row(&lat));
    report.row(
        "hub RSS before / start / end / max",
        format!(
            "{} / {} / {} / {} KiB",
            thousands(rss_before),
            thousands(rss_start),
            thousands(rss_end),
            thousands(rss_max)
        ),
    );
    report.row(
        "hub RSS slope",
        slope.map_or("-".into(), |s| format!("{s:+.1} KiB/min")),
    );
    report.row(
        "herald_connections min / max",
        format!(
            "{} / {} ({} of {} samples scraped)",
            gauge_min.map_or("-".into(), |g| thousands(*g)),
            gauge_max.map_or("-".into(), |g| thousands(*g)),
            gauges.len(),
            samples.len()
        ),
    );
    if !t.ended.is_empty() {
        report.row("steady connections ended early", format!("{:?}", t.ended));
    }
    if let Some(e) = &published.first_error {
        report.row("first publish error", e);
    }
    report.row("wait ended", wait.as_str());

    report.json = json!({
        "scenario": "soak",
        "ok": report.ok,
        "target": a.url,
        "params": {
            "connections": a.connections,
            "groups": a.groups,
            "duration_s": a.duration,
            "rate": a.rate,
            "churn_per_s": a.churn,
            "churning_fraction": a.churning,
            "sample_every_s": a.sample_every,
            "payload": a.payload,
        },
        "results": {
            "steady_connections": steady_connected,
            "churning_connections": churners_open,
            "connect_s": round3(connect_s),
            "reopened": reopened,
            "reopen_failed": churn_failed,
            "churning_closed_by_hub": ended_by_hub,
            "churning_deliveries": churn.frames.load(Relaxed),
            "notifies_sent": sent,
            "notifies_non_202": published.non_202,
            "notify_errors": published.errors,
            "expected_deliveries": t.expected,
            "deliveries": t.received,
            "loss": t.loss,
            "duplicates": t.duplicates,
            "ended_early": t.ended,
            "latency_ms": lat,
            "rss_before_kib": rss_before,
            "rss_start_kib": rss_start,
            "rss_end_kib": rss_end,
            "rss_max_kib": rss_max,
            "rss_slope_kib_per_min": slope.map(round1),
            "connections_gauge_min": gauge_min,
            "connections_gauge_max": gauge_max,
            "samples": samples.iter().map(|s| json!([round1(s.at_s), s.rss_kib, s.gauge])).collect::<Vec<Value>>(),
            "wait": wait.as_str(),
        }
    });
    Ok(report)
}

/// One churning connection's task.
struct Churner {
    target: Target,
    path: String,
    connect: ConnectOpts,
    gate: Arc<Semaphore>,
    churn: Arc<Churn>,
    stop: CancellationToken,
}

impl Churner {
    /// Opens the connection, waits for the steady phase to begin, then closes and
    /// reopens it at `begin + first`, and every `period` after that, until stopped.
    async fn run(
        self,
        first: Duration,
        period: Option<Duration>,
        mut begin: watch::Receiver<Option<Instant>>,
    ) {
        let mut frames = 0u64;
        let Some(mut ws) = self.open().await else {
            return;
        };
        self.churn.opened.fetch_add(1, Relaxed);
        let started = async {
            match begin.wait_for(Option::is_some).await {
                Ok(at) => *at,
                Err(_) => None,
            }
        };
        let mut next = match self.hold(&mut ws, &mut frames, started).await {
            Held::Until(Some(at)) => at + first,
            _ => return self.finish(Some(ws), frames).await,
        };
        loop {
            let wake = period.map(|_| next);
            let until = async move {
                match wake {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            match self.hold(&mut ws, &mut frames, until).await {
                Held::Stopped => return self.finish(Some(ws), frames).await,
                Held::Until(()) => {
                    ws.close().await;
                }
                Held::EndedByHub => {
                    self.churn.ended_by_hub.fetch_add(1, Relaxed);
                }
            }
            // Reopen; after a failure the connection is gone for the rest of the run.
            match self.open().await {
                Some(fresh) => {
                    self.churn.reopened.fetch_add(1, Relaxed);
                    ws = fresh;
                }
                None => return self.finish(None, frames).await,
            }
            if let Some(period) = period {
                next += period;
            }
        }
    }

    /// Reads (answering pings, counting notifications) until `until` resolves, the run
    /// stops or the hub ends the connection.
    async fn hold<T>(
        &self,
        ws: &mut WsClient,
        frames: &mut u64,
        until: impl std::future::Future<Output = T>,
    ) -> Held<T> {
        tokio::pin!(until);
        loop {
            tokio::select! {
                read = ws.read_batch(|_, _| *frames += 1) => match read {
                    Ok(ReadOutcome::Data) => {}
                    Ok(ReadOutcome::Closed(_) | ReadOutcome::Eof) | Err(_) => {
                        return Held::EndedByHub
                    }
                },
                value = &mut until => return Held::Until(value),
                () = self.stop.cancelled() => return Held::Stopped,
            }
        }
    }

    async fn open(&self) -> Option<WsClient> {
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self.gate.acquire().await.ok()?;
                WsClient::connect(
                    self.target.addr,
                    &self.target.host,
                    &self.path,
                    self.connect.read_buffer,
                    Duration::from_secs(10),
                )
                .await
            };
            match result {
                Ok(ws) => return Some(ws),
                Err(e) if attempt >= self.connect.connect_retries || self.stop.is_cancelled() => {
                    if self.churn.failed.fetch_add(1, Relaxed) == 0 {
                        eprintln!("churning connection failed to open: {e}");
                    }
                    return None;
                }
                Err(_) => {
                    attempt += 1;
                    sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
            }
        }
    }

    async fn finish(&self, ws: Option<WsClient>, frames: u64) {
        self.churn.frames.fetch_add(frames, Relaxed);
        if let Some(ws) = ws {
            ws.close().await;
        }
    }
}

/// How holding a connection ended.
enum Held<T> {
    Until(T),
    Stopped,
    EndedByHub,
}

/// `herald_connections` from one scrape of `/metrics`; `None` if the scrape failed.
async fn scrape_connections(metrics: &Target) -> Option<u64> {
    let body = timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(metrics.addr).await.ok()?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            metrics.host
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.ok()?;
        Some(body)
    })
    .await
    .ok()??;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("herald_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Least-squares slope of RSS over time, KiB per minute (`None` under two samples).
fn slope_kib_per_min(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.at_s).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        let dt = s.at_s - mean_t;
        num += dt * (s.rss_kib as f64 - mean_r);
        den += dt * dt;
    }
    (den > 0.0).then(|| num / den * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_kib_per_minute() {
        let at = |at_s, rss_kib| Sample {
            at_s,
            rss_kib,
            gauge: None,
        };
        let rising = [at(0.0, 1000), at(30.0, 1010), at(60.0, 1020)];
        assert!((slope_kib_per_min(&rising).unwrap() - 20.0).abs() < 1e-9);
        let flat = [at(0.0, 1000), at(60.0, 1000)];
        assert_eq!(slope_kib_per_min(&flat), Some(0.0));
        assert_eq!(slope_kib_per_min(&flat[..1]), None);
    }
}
