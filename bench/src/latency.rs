//! Latency: the clock notifications carry, and histograms of what it measured.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::report::round3;

/// Wall-clock nanoseconds since the UNIX epoch (what notifies carry as `t`).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
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

/// p50/p90/p99/max of a µs histogram, in milliseconds (`null` when nothing was
/// measured).
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Samples recorded.
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    /// The percentiles of `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| (!h.is_empty()).then(|| round3(us as f64 / 1000.0));
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}
