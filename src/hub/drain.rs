//! Write-behind: the hub's drains write fan-outs after the publishing call has returned,
//! the way uWebSockets drains its topic tree once per event-loop iteration.
//!
//! A large group's fan-out costs the publishing call one [`Record`] per drain: the shared
//! frame and the group's members, a snapshot the group keeps between joins and leaves
//! (see `Group::snapshot`). The drain is one task for many fan-outs: it yields once, so
//! the other publications ready on this worker are recorded too, then writes each member
//! once per run of records of one group: one lock and one vectored write per member for
//! all the frames published meanwhile, and nothing queued per member when its socket
//! takes them. Small groups in a burst still queue their frame on each member and hand
//! the members whose queue was empty to the drain, which writes each queue with one
//! vectored write (see [`Drains::schedule`]). What a socket does not take at once is
//! left to that member's session, which finishes it when the socket is writable.
//!
//! A member always goes to the same drain (by connection id), and each drain writes a
//! group's records in order, so a member sees a group's frames in publication order.
//! Steps that must come after the fan-outs already published (closing a group or a
//! user's connections, a shutdown) wait for them with [`Drains::after`].
//!
//! What bounds the records waiting: a drain takes all of them at once and writes each
//! group's in one pass over its members, so a pass costs the same however many records
//! came in meanwhile; publishers that outpace it only make the next pass's writes
//! fuller. A member that cannot take them all gets at most its queue's bound
//! (`--send-queue`) queued, and is closed as a slow consumer beyond it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use super::{Delivery, Member};
use crate::metrics::Metrics;

/// Most drains (one per core is enough: each is a task any worker can run).
const MAX_DRAINS: usize = 16;

/// Members written between two yields of a drain. Yielding lets the publications that
/// arrived meanwhile be recorded, so the members not yet written get them in the same
/// write: under a burst, fewer and fuller writes (the cost is per write, not per byte);
/// at a steady rate it changes nothing.
const YIELD_EVERY: usize = 64;

/// Members a drain touches at once before writing to them (see [`Member::warm`]); a
/// divisor of [`YIELD_EVERY`].
const WARM: usize = 16;

/// One drain's share of a group's members, in the order they are written. Shared by
/// every fan-out to the group until its next join or leave.
pub(super) type Share = Arc<[Member]>;

/// The hub's drains; a member always goes to the same one (by connection id).
#[derive(Debug)]
pub(super) struct Drains {
    lists: Box<[Arc<Drain>]>,
}

#[derive(Debug)]
struct Drain {
    work: Mutex<Work>,
    metrics: Option<Arc<Metrics>>,
}

/// What a drain has to write. `running` is set from the first item until the drain's
/// task finds nothing left, so one task at a time writes a drain's records, in order.
#[derive(Debug, Default)]
struct Work {
    /// Members whose queue went from empty to non-empty (small groups in a burst).
    members: Vec<Member>,
    /// Fan-outs and barriers, in publication order.
    jobs: VecDeque<Job>,
    running: bool,
}

#[derive(Debug)]
enum Job {
    Write(Record),
    Then(Arc<Barrier>),
}

/// One fan-out for one drain: `frame`, published at `at`, for each of `members`.
#[derive(Debug)]
struct Record {
    frame: Bytes,
    at: Instant,
    members: Share,
    /// The group's count of records not yet written (see `Group::pending`).
    pending: Arc<AtomicUsize>,
}

/// Runs its action once every drain it was handed to has reached it.
struct Barrier {
    left: AtomicUsize,
    then: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier").field("left", &self.left).finish()
    }
}

impl Barrier {
    fn arrive(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let then = self.then.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(then) = then {
                then();
            }
        }
    }
}

impl Drains {
    /// One drain per available core; `metrics` records the frames written.
    pub(super) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lists = (0..cores.clamp(1, MAX_DRAINS))
            .map(|_| {
                Arc::new(Drain {
                    work: Mutex::new(Work::default()),
                    metrics: metrics.clone(),
                })
            })
            .collect();
        Self { lists }
    }

    fn index(&self, member: &Member) -> usize {
        member.id() as usize % self.lists.len()
    }

    /// Splits `members` into one share per drain (empty shares included).
    pub(super) fn split<'a>(&self, members: impl Iterator<Item = &'a Member>) -> Box<[Share]> {
        let mut split: Vec<Vec<Member>> = vec![Vec::new(); self.lists.len()];
        for member in members {
            split[self.index(member)].push(member.clone());
        }
        // In connection order: the kernel allocated their sockets in about that order,
        // so consecutive writes touch neighbouring socket memory.
        split
            .into_iter()
            .map(|mut share| {
                share.sort_unstable_by_key(Member::id);
                Share::from(share)
            })
            .collect()
    }

    /// Hands a fan-out of `frame`, published at `at`, to the drains of `shares` (as
    /// [`Drains::split`] made them); `pending` counts the records until each is written.
    pub(super) fn write(
        &self,
        shares: &[Share],
        frame: &Bytes,
        at: Instant,
        pending: &Arc<AtomicUsize>,
    ) {
        for (drain, members) in self.lists.iter().zip(shares) {
            if members.is_empty() {
                continue;
            }
            pending.fetch_add(1, Ordering::AcqRel);
            drain.push(|work| {
                work.jobs.push_back(Job::Write(Record {
                    frame: frame.clone(),
                    at,
                    members: members.clone(),
                    pending: pending.clone(),
                }))
            });
        }
    }

    /// Hands members whose queue was empty (reported [`super::Delivery::Scheduled`]) to
    /// their drains.
    pub(super) fn schedule(&self, members: Vec<Member>) {
        if members.is_empty() {
            return;
        }
        if let [only] = &self.lists[..] {
            only.push(|work| work.members.extend(members));
            return;
        }
        let mut split: Vec<Vec<Member>> = vec![Vec::new(); self.lists.len()];
        for member in members {
            split[self.index(&member)].push(member);
        }
        for (drain, members) in self.lists.iter().zip(split) {
            if !members.is_empty() {
                drain.push(|work| work.members.extend(members));
            }
        }
    }

    /// Runs `then` once everything handed to the drains so far has been written (or
    /// queued on its members): at once when no drain has work.
    pub(super) fn after(&self, then: impl FnOnce() + Send + 'static) {
        let barrier = Arc::new(Barrier {
            left: AtomicUsize::new(self.lists.len()),
            then: Mutex::new(Some(Box::new(then))),
        });
        for drain in self.lists.iter() {
            let mut work = drain.lock();
            if work.running {
                work.jobs.push_back(Job::Then(barrier.clone()));
            } else {
                drop(work);
                barrier.arrive();
            }
        }
    }

    /// Records `frames` written at once by a fan-out published at `at` (see
    /// [`super::Member::try_write_at`]), as a drain records what it writes.
    pub(super) fn record(&self, frames: usize, at: Instant) {
        if frames > 0 {
            self.lists[0].record(&Tally {
                frames,
                first: Some(at),
                slow: 0,
            });
        }
    }
}

impl Drain {
    fn lock(&self) -> MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds work with `add`; the first since the drain last ran starts its task.
    fn push(self: &Arc<Self>, add: impl FnOnce(&mut Work)) {
        let mut work = self.lock();
        add(&mut work);
        if std::mem::replace(&mut work.running, true) {
            return;
        }
        drop(work);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let drain = self.clone();
                runtime.spawn(async move { drain.run().await });
            }
            // Outside a runtime (unit tests of the hub): write at once.
            Err(_) => {
                let mut tally = Tally::default();
                while let Some((members, jobs)) = self.take() {
                    members.iter().for_each(|m| tally.flush(m));
                    for run in runs(jobs) {
                        run.members().iter().for_each(|m| run.write(m, &mut tally));
                        run.done();
                    }
                }
                self.record(&tally);
            }
        }
    }

    /// What was added since the last call; `None` (and the drain stops running) when
    /// nothing was.
    fn take(&self) -> Option<(Vec<Member>, VecDeque<Job>)> {
        let mut work = self.lock();
        if work.members.is_empty() && work.jobs.is_empty() {
            work.running = false;
            return None;
        }
        Some((
            std::mem::take(&mut work.members),
            std::mem::take(&mut work.jobs),
        ))
    }

    /// Writes everything added until none is left.
    async fn run(&self) {
        let mut tally = Tally::default();
        // Let the publications already waiting on this worker be recorded first: they
        // go out in the same writes.
        tokio::task::yield_now().await;
        let mut written = 0;
        while let Some((members, jobs)) = self.take() {
            for member in &members {
                written += 1;
                if written >= YIELD_EVERY {
                    written = 0;
                    tokio::task::yield_now().await;
                }
                tally.flush(member);
            }
            for run in runs(jobs) {
                for chunk in run.members().chunks(WARM) {
                    chunk.iter().for_each(Member::warm);
                    for member in chunk {
                        run.write(member, &mut tally);
                    }
                    written += chunk.len();
                    if written >= YIELD_EVERY {
                        written = 0;
                        tokio::task::yield_now().await;
                    }
                }
                run.done();
            }
        }
        self.record(&tally);
    }

    fn record(&self, tally: &Tally) {
        if let Some(metrics) = &self.metrics {
            metrics.batch_written(tally.frames, tally.first);
            if tally.slow > 0 {
                metrics.dropped_slow_consumer.inc_by(tally.slow as u64);
            }
        }
    }
}

/// A drain's jobs as runs, in the order to write them: each group's records (by its
/// `pending` count, which identifies the group) are gathered, in publication order, and
/// consecutive ones with one share (no join or leave between them, no audience) become
/// one run, whose frames each member gets in one write: a burst spread over many groups
/// still reaches each member in one write per group. Groups are not ordered with respect
/// to each other (herald orders notifications per group), but a barrier is: every record
/// before it is written first.
fn runs(jobs: VecDeque<Job>) -> Vec<Run> {
    let mut out = Vec::new();
    // Each group's runs since the last barrier, in order of first appearance.
    let mut groups: Vec<Vec<Run>> = Vec::new();
    let mut index: HashMap<*const AtomicUsize, usize> = HashMap::new();
    for job in jobs {
        let record = match job {
            Job::Write(record) => record,
            Job::Then(barrier) => {
                out.extend(groups.drain(..).flatten());
                index.clear();
                out.push(Run::Then(barrier));
                continue;
            }
        };
        let next = groups.len();
        let i = *index.entry(Arc::as_ptr(&record.pending)).or_insert(next);
        if i == next {
            groups.push(Vec::new());
        }
        let group = &mut groups[i];
        match group.last_mut() {
            Some(Run::Write {
                frames, members, ..
            }) if Arc::ptr_eq(members, &record.members) => frames.push(record.frame),
            _ => group.push(Run::Write {
                frames: vec![record.frame],
                at: record.at,
                members: record.members,
                pending: record.pending,
            }),
        }
    }
    out.extend(groups.into_iter().flatten());
    out
}

enum Run {
    Write {
        frames: Vec<Bytes>,
        at: Instant,
        members: Share,
        pending: Arc<AtomicUsize>,
    },
    Then(Arc<Barrier>),
}

impl Run {
    /// The members to write (none for a barrier).
    fn members(&self) -> &[Member] {
        match self {
            Run::Write { members, .. } => members,
            Run::Then(_) => &[],
        }
    }

    /// Writes the run's frames to `member`, counting them in `tally`.
    fn write(&self, member: &Member, tally: &mut Tally) {
        if let Run::Write { frames, at, .. } = self {
            let (delivery, written) = member.try_write_all(frames, *at);
            tally.frames += written;
            if written > 0 {
                tally.first = Some(tally.first.map_or(*at, |t| t.min(*at)));
            }
            if delivery == Delivery::Slow {
                tally.slow += frames.len();
            }
        }
    }

    /// Ends the run once every member was written: its records are no longer pending,
    /// and a barrier is passed.
    fn done(self) {
        match self {
            Run::Write {
                frames, pending, ..
            } => {
                pending.fetch_sub(frames.len(), Ordering::AcqRel);
            }
            Run::Then(barrier) => barrier.arrive(),
        }
    }
}

/// Frames a drain wrote, when the first of them was published, and the frames that did
/// not fit a slow consumer's queue.
#[derive(Default)]
struct Tally {
    frames: usize,
    first: Option<Instant>,
    slow: usize,
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
