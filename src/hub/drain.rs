//! Write-behind: the hub's drains write every scheduled member's queue, the way
//! uWebSockets drains its topic tree once per event-loop iteration.
//!
//! A fan-out only queues the shared frame on each member (a reference count) and hands
//! the members whose queue was empty to a drain. The drain is one task for many members:
//! it yields once, so the other publications ready on this worker are fanned out too,
//! then writes each member's queue with one vectored write. So a delivery costs neither
//! a task wake-up nor a `select!` round per member, and a burst of publications reaches
//! each socket in one write. What a socket does not take at once is left to that
//! member's session, which finishes it when the socket is writable.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::Member;
use crate::metrics::Metrics;

/// Most drains (one per core is enough: each is a task any worker can run).
const MAX_DRAINS: usize = 16;

/// Members written between two yields of a drain. Yielding lets the publications that
/// arrived meanwhile queue their frames, so the members not yet written get them in the
/// same write: under a burst, fewer and fuller writes (the cost is per write, not per
/// byte); at a steady rate it changes nothing.
const YIELD_EVERY: usize = 64;

/// The hub's drains; a member always goes to the same one (by connection id).
#[derive(Debug)]
pub(super) struct Drains {
    lists: Box<[Arc<Drain>]>,
}

#[derive(Debug)]
struct Drain {
    /// Members scheduled since this drain last ran; a task is spawned when it fills.
    scheduled: Mutex<Vec<Member>>,
    metrics: Option<Arc<Metrics>>,
}

impl Drains {
    /// One drain per available core; `metrics` records the frames written.
    pub(super) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lists = (0..cores.clamp(1, MAX_DRAINS))
            .map(|_| {
                Arc::new(Drain {
                    scheduled: Mutex::new(Vec::new()),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Self { lists }
    }

    /// Hands members whose queue was empty (reported [`super::Delivery::Scheduled`]) to
    /// their drains.
    pub(super) fn schedule(&self, members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        if let [only] = &self.lists[..] {
            only.add(members);
            return;
        }
        let mut split: Vec<Vec<Member>> = vec![Vec::new(); self.lists.len()];
        for member in members {
            split[member.id() as usize % self.lists.len()].push(member);
        }
        for (drain, members) in self.lists.iter().zip(split) {
            drain.add(members);
        }
    }

    /// Records `frames` written at once by a fan-out published at `at` (see
    /// [`super::Member::try_write_at`]), as a drain records what it writes.
    pub(super) fn record(&self, frames: usize, at: Instant) {
        if frames > 0 {
            self.lists[0].record(&Tally {
                frames,
                first: Some(at),
            });
        }
    }
}

impl Drain {
    /// Adds members; the first ones since the last run start a drain task.
    fn add(self: &Arc<Self>, members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        let mut list = self.lock();
        let idle = list.is_empty();
        list.extend(members);
        drop(list);
        if idle {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let drain = self.clone();
                    runtime.spawn(async move { drain.run().await });
                }
                // Outside a runtime (unit tests of the hub): write at once.
                Err(_) => {
                    let mut tally = Tally::default();
                    while let Some(members) = self.take() {
                        members.iter().for_each(|m| tally.flush(m));
                    }
                    self.record(&tally);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.scheduled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was scheduled since the last call; `None` when nothing was.
    fn take(&self) -> Option<Vec<Member>> {
        Some(std::mem::take(&mut *self.lock())).filter(|m| !m.is_empty())
    }

    /// Writes every scheduled member's queue until none is left.
    async fn run(&self) {
        let mut tally = Tally::default();
        // Let the publications already waiting on this worker queue their frames first:
        // they go out in the same writes.
        tokio::task::yield_now().await;
        while let Some(members) = self.take() {
            for (i, member) in members.iter().enumerate() {
                if i > 0 && i % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
                tally.flush(member);
            }
        }
        self.record(&tally);
    }

    fn record(&self, tally: &Tally) {
        if let Some(metrics) = &self.metrics {
            metrics.batch_written(tally.frames, tally.first);
        }
    }
}

/// Frames a drain wrote, and when the first of them was published.
#[derive(Default)]
struct Tally {
    frames: usize,
    first: Option<Instant>,
}

impl Tally {
    fn flush(&mut self, member: &Member) {
        let (written, since) = member.flush_scheduled();
        self.frames += written;
        self.first = match (self.first, since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}
