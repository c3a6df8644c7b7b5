//! Small shared pieces: clocks, the target address, /proc readings, histograms.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Wall-clock nanoseconds since the UNIX epoch (what notifies carry as `t`).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The hub under test: where to connect and what to send as `Host`.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/]`; only plain HTTP over TCP is supported.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url must start with http:// (got {url})"))?;
        let host = rest.trim_end_matches('/');
        if host.contains('/') {
            return Err(format!("--url must not have a path (got {url})"));
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to nothing"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address: this tool only targets the local machine"
            ));
        }
        Ok(Self {
            addr,
            host: host.to_string(),
        })
    }
}

/// Resident set size of `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS line"))
}

/// User + system CPU time of process `pid` (all threads), from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields are counted after its closing paren.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the full line (utime, stime) are 12 and 13 here (state is 3 -> 1).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU used by a process between two readings, as a percentage of one core.
pub struct CpuMeter {
    pid: u32,
    start: Option<Duration>,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            start: cpu_time(pid),
            wall: std::time::Instant::now(),
        }
    }

    /// Percent of one core since `start`, or None when /proc could not be read.
    pub fn percent(&self) -> Option<f64> {
        let used = cpu_time(self.pid)?.checked_sub(self.start?)?;
        let wall = self.wall.elapsed().as_secs_f64();
        (wall > 0.0).then(|| round1(100.0 * used.as_secs_f64() / wall))
    }
}

/// The CPU meters of one measured phase, started together: the hub process (when its pid
/// is known), this process and every core.
pub struct PhaseMeters {
    hub_pid: Option<u32>,
    hub: Option<CpuMeter>,
    client: CpuMeter,
    cores: CoreMeter,
}

impl PhaseMeters {
    pub fn start(hub_pid: Option<u32>) -> Self {
        Self {
            hub_pid,
            hub: hub_pid.map(CpuMeter::start),
            client: CpuMeter::start(std::process::id()),
            cores: CoreMeter::start(),
        }
    }

    /// CPU use since `start`.
    pub fn finish(&self) -> CpuUse {
        let hub = self.hub.as_ref().and_then(CpuMeter::percent);
        let client = self.client.percent();
        let cores_busy = self.cores.percent();
        CpuUse {
            hub,
            client,
            others: self.cores.others_percent(&[hub, client]),
            hub_core: self
                .hub_pid
                .and_then(|p| CoreMeter::pinned_percent(&cores_busy, p)),
            client_core: CoreMeter::pinned_percent(&cores_busy, std::process::id()),
            cores_busy,
        }
    }
}

/// CPU use over one phase, in percent of one core.
#[derive(Default)]
pub struct CpuUse {
    pub hub: Option<f64>,
    pub client: Option<f64>,
    pub cores_busy: Vec<f64>,
    pub hub_core: Option<f64>,
    pub client_core: Option<f64>,
    pub others: Option<f64>,
}

impl CpuUse {
    /// The JSON result fields, each key prefixed with `prefix` (`""` or `"burst_"`).
    pub fn json_fields(&self, prefix: &str) -> serde_json::Map<String, Value> {
        let fields = [
            ("hub_cpu_pct", serde_json::json!(self.hub)),
            ("client_cpu_pct", serde_json::json!(self.client)),
            ("cores_busy_pct", serde_json::json!(self.cores_busy)),
            ("hub_core_busy_pct", serde_json::json!(self.hub_core)),
            ("client_core_busy_pct", serde_json::json!(self.client_core)),
            ("other_cpu_pct", serde_json::json!(self.others)),
        ];
        fields
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect()
    }
}

/// Busy and total jiffies of every CPU, from /proc/stat (`cpu0`, `cpu1`, ...).
/// Per core: (busy, total, task) jiffies, where task = user + nice + system: time spent
/// running processes, as opposed to interrupts.
fn core_jiffies() -> Vec<(u64, u64, u64)> {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Vec::new();
    };
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait are not busy; irq and softirq (loopback TCP work) are.
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let task = v.iter().take(3).sum();
            (total - idle, total, task)
        })
        .collect()
}

/// The CPUs process `pid` may run on (from `Cpus_allowed_list`, e.g. "1" or "0-1,3").
pub fn allowed_cpus(pid: u32) -> Vec<usize> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let mut ends = part
            .split('-')
            .filter_map(|x| x.trim().parse::<usize>().ok());
        if let Some(a) = ends.next() {
            let b = ends.next().unwrap_or(a);
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// How busy each core was between two readings (user + system + irq + softirq), which
/// also counts the loopback TCP work that per-process CPU time misses.
pub struct CoreMeter {
    start: Vec<(u64, u64, u64)>,
}

impl CoreMeter {
    pub fn start() -> Self {
        Self {
            start: core_jiffies(),
        }
    }

    /// Busy percent of the core `pid` is pinned to; None when it may run on several.
    pub fn pinned_percent(busy: &[f64], pid: u32) -> Option<f64> {
        match allowed_cpus(pid).as_slice() {
            [one] => busy.get(*one).copied(),
            _ => None,
        }
    }

    /// Process time on all cores since `start` that neither `pids` used, in percent of one
    /// core: other work on the machine (builds, tests) that disturbs the measurement.
    pub fn others_percent(&self, used: &[Option<f64>]) -> Option<f64> {
        let now = core_jiffies();
        let cores = now.len().min(self.start.len());
        if cores == 0 {
            return None;
        }
        let (mut task, mut total) = (0u64, 0u64);
        for ((_, t1, k1), (_, t0, k0)) in now.iter().zip(&self.start) {
            task += k1.saturating_sub(*k0);
            total += t1.saturating_sub(*t0);
        }
        if total == 0 {
            return None;
        }
        let per_core = total as f64 / cores as f64;
        let all = 100.0 * task as f64 / per_core;
        let ours: f64 = used.iter().map(|u| u.unwrap_or(0.0)).sum();
        Some(round1((all - ours).max(0.0)))
    }

    /// Percent busy per core since `start`.
    pub fn percent(&self) -> Vec<f64> {
        core_jiffies()
            .iter()
            .zip(&self.start)
            .map(|((b1, t1, _), (b0, t0, _))| {
                let total = t1.saturating_sub(*t0);
                if total == 0 {
                    0.0
                } else {
                    round1(100.0 * b1.saturating_sub(*b0) as f64 / total as f64)
                }
            })
            .collect()
    }
}

/// Which side's core was saturated (>= 90% busy, softirq included) during a measurement.
pub fn bottleneck(hub_core: Option<f64>, client_core: Option<f64>) -> String {
    let sat = |v: Option<f64>| v.is_some_and(|v| v >= 90.0);
    let show = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.0}%"));
    let verdict = match (sat(hub_core), sat(client_core)) {
        (true, false) => "hub core saturated",
        (false, true) => "CLIENT core saturated: the hub may be able to do more",
        (true, true) => "both cores saturated",
        (false, false) => "neither core saturated (latency/rate-bound)",
    };
    format!(
        "{verdict} (hub core {}, client core {})",
        show(hub_core),
        show(client_core)
    )
}

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Latency histograms shared by many tasks: each task records into one shard, taking
/// its lock once per batch of frames. Far less memory than one histogram per task when
/// there are 15,000 tasks, and with at most two client threads the locks never contend.
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(new_histogram()))
                .collect(),
        }
    }

    /// Records `values` (µs) into the shard for task `task`.
    pub fn record_all(&self, task: usize, values: &mut Vec<u64>) {
        if values.is_empty() {
            return;
        }
        let shard = &self.shards[task % self.shards.len()];
        let mut h = shard.lock().unwrap_or_else(|p| p.into_inner());
        for v in values.drain(..) {
            h.saturating_record(v.max(1));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|p| p.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// p50/p90/p99/max of a µs histogram, in milliseconds, as JSON.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0, "p50": null, "p90": null, "p99": null, "max": null});
    }
    let ms = |us: u64| round3(us as f64 / 1000.0);
    json!({
        "count": h.len(),
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "max": ms(h.max()),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loopback_urls() {
        let t = Target::parse("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.host, "127.0.0.1:8080");
        assert!(Target::parse("127.0.0.1:8080").is_err());
        assert!(Target::parse("http://127.0.0.1:8080/x").is_err());
    }

    #[test]
    fn reads_own_proc() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("rss") > 0);
        assert!(cpu_time(pid).is_some());
        assert!(!allowed_cpus(pid).is_empty());
    }
}
