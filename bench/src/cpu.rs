//! CPU use over a measured phase: per process, per core, and which side was the limit.

use std::time::Duration;

use serde::Serialize;

use crate::procfs::{allowed_cpus, core_jiffies, cpu_time, CoreJiffies};
use crate::report::round1;

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
            steal: self.cores.steal_percent(),
            hub_core: self
                .hub_pid
                .and_then(|p| CoreMeter::pinned_percent(&cores_busy, p)),
            client_core: CoreMeter::pinned_percent(&cores_busy, std::process::id()),
            cores_busy,
        }
    }
}

/// CPU use over one phase, in percent of one core; serialised as the result fields
/// `summary` and `bench/run.sh` read.
#[derive(Default, Serialize)]
pub struct CpuUse {
    #[serde(rename = "hub_cpu_pct")]
    pub hub: Option<f64>,
    #[serde(rename = "client_cpu_pct")]
    pub client: Option<f64>,
    #[serde(rename = "cores_busy_pct")]
    pub cores_busy: Vec<f64>,
    #[serde(rename = "hub_core_busy_pct")]
    pub hub_core: Option<f64>,
    #[serde(rename = "client_core_busy_pct")]
    pub client_core: Option<f64>,
    /// Other processes' CPU (see [`CoreMeter::others_percent`]).
    #[serde(rename = "other_cpu_pct")]
    pub others: Option<f64>,
    /// Time the VM's host took from this machine's cores (see
    /// [`CoreMeter::steal_percent`]).
    #[serde(rename = "steal_pct")]
    pub steal: Option<f64>,
}

impl CpuUse {
    /// Which side's core was saturated (>= 90% busy, softirq included) during the
    /// phase.
    pub fn bottleneck(&self) -> String {
        let (hub_core, client_core) = (self.hub_core, self.client_core);
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
}

/// How busy each core was between two readings (user + system + irq + softirq), which
/// also counts the loopback TCP work that per-process CPU time misses.
pub struct CoreMeter {
    start: Vec<CoreJiffies>,
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
        for (c1, c0) in now.iter().zip(&self.start) {
            task += c1.task.saturating_sub(c0.task);
            total += c1.total.saturating_sub(c0.total);
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
            .map(|(c1, c0)| {
                let total = c1.total.saturating_sub(c0.total);
                if total == 0 {
                    0.0
                } else {
                    round1(100.0 * c1.busy.saturating_sub(c0.busy) as f64 / total as f64)
                }
            })
            .collect()
    }

    /// Time stolen from all cores since `start` by the VM's host, in percent of one core:
    /// a measurement that lost much of its cores to the host says little about the
    /// servers (`bench/run.sh` measures it again, as for other processes' CPU).
    pub fn steal_percent(&self) -> Option<f64> {
        let now = core_jiffies();
        let cores = now.len().min(self.start.len());
        let (mut steal, mut total) = (0u64, 0u64);
        for (c1, c0) in now.iter().zip(&self.start) {
            steal += c1.steal.saturating_sub(c0.steal);
            total += c1.total.saturating_sub(c0.total);
        }
        (cores > 0 && total > 0).then(|| round1(100.0 * steal as f64 * cores as f64 / total as f64))
    }
}
