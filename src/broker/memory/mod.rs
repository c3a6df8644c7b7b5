//! The embedded single-node broker: offsets, epochs and history in memory, delivery
//! straight into the hub.
//!
//! Each publication is encoded once; the same shared bytes go to every member and into
//! the group's history ring, so keeping history costs one small allocation and a few
//! atomic operations per publication and nothing per delivery.

mod budget;
mod log;

use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::history::{Entry, HistoryRead, HistorySettings};
use super::{Broker, BrokerError, GroupCount, HistoryUsage, Local, PublishNow, Published};
use crate::hash::{self, HashMap, RandomState};
use crate::protocol::{Close, Epoch, GroupName, Offset, Position, Publication, UserId};
use budget::Budget;
use log::Log;

const SHARDS: usize = 64;

/// One shard of the group table.
type Shard = Mutex<HashMap<GroupName, Arc<Log>>>;

/// How often idle state is looked for: often enough to free it soon after its TTL, at
/// most every [`MAX_SWEEP`] (one pass over all group names per sweep).
const MIN_SWEEP: Duration = Duration::from_millis(20);
const MAX_SWEEP: Duration = Duration::from_secs(5);

/// Broker for one node.
///
/// A group has state here (offset, epoch, history) while this node watches it and for
/// `--history-ttl` after its last notification: an idle group without members is
/// forgotten then, and its next notification starts a new epoch at offset 1. See the
/// README for what that costs per group.
#[derive(Debug)]
pub struct MemoryBroker {
    local: Arc<Local>,
    logs: Box<[Shard]>,
    hasher: RandomState,
    history: HistorySettings,
    budget: Arc<Budget>,
    /// The broker's clock for `Log::touched`.
    started: Instant,
    /// Reported for groups without state: nothing was published in it.
    boot_epoch: Epoch,
}

impl MemoryBroker {
    /// A broker delivering through `local`, keeping `history`. Inside a tokio runtime it
    /// also starts the task that frees idle state; the task ends with the broker.
    pub fn new(local: Arc<Local>, history: HistorySettings) -> Arc<Self> {
        let logs = (0..SHARDS).map(|_| Mutex::new(hash::map())).collect();
        let broker = Arc::new(Self {
            local,
            logs,
            hasher: hash::random_state(),
            history,
            budget: Arc::new(Budget::new(history.max_bytes)),
            started: Instant::now(),
            boot_epoch: Epoch::random(),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(sweep_while_alive(Arc::downgrade(&broker)));
        }
        broker
    }

    fn shard(&self, group: &GroupName) -> MutexGuard<'_, HashMap<GroupName, Arc<Log>>> {
        let i = self.hasher.hash_one(group) as usize % SHARDS;
        lock_map(&self.logs[i])
    }

    fn log(&self, group: &GroupName) -> Option<Arc<Log>> {
        self.shard(group).get(group).cloned()
    }

    /// Milliseconds on the broker's clock, never 0 (0 means "never notified").
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Group names with state (notified within the TTL, or watched).
    pub fn notified_groups(&self) -> usize {
        self.logs.iter().map(|m| lock_map(m).len()).sum()
    }

    /// Frees what has been idle too long: history older than `--history-ttl`, and the
    /// whole state of groups this node does not watch once they have been idle for
    /// [`HistorySettings::idle`]. A log being published to right now is not idle.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let ttl = Self::ms(self.history.ttl);
        let idle = Self::ms(self.history.idle());
        let history = self.history.is_on();
        for shard in self.logs.iter() {
            lock_map(shard).retain(|_, log| {
                let quiet = log.idle_ms(now);
                if !log.watched.load(Ordering::Relaxed) && quiet >= idle {
                    return false;
                }
                if history && quiet >= ttl {
                    if let Some(mut state) = log.try_state() {
                        state.forget_history();
                    }
                }
                true
            });
        }
    }
}

fn lock_map<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning cannot leave a HashMap of Arcs inconsistent: keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn sweep_while_alive(broker: Weak<MemoryBroker>) {
    let every = match broker.upgrade() {
        // With history on, `idle` is the TTL: the shortest timeout either way.
        Some(b) => (b.history.idle() / 8).clamp(MIN_SWEEP, MAX_SWEEP),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match broker.upgrade() {
            Some(b) => b.sweep(),
            None => return,
        }
    }
}

impl MemoryBroker {
    /// Publishes at once: nothing here waits, so no future is needed.
    fn publish_at_once(&self, mut publication: Publication) -> Published {
        let log = {
            let mut shard = self.shard(&publication.group);
            let log = shard
                .entry(publication.group.clone())
                .or_insert_with(|| Arc::new(Log::new()))
                .clone();
            log.touched.store(self.now_ms(), Ordering::Relaxed);
            log
        };
        let mut state = log.state();
        state.offset += 1;
        publication.offset = state.offset;
        publication.epoch = state.epoch.clone();
        let frame = Local::encode(&publication);
        let users = publication.users.take().map(Arc::new);
        let fanout = self
            .local
            .deliver_encoded(&publication, &frame, users.as_deref());
        if self.history.is_on() {
            let entry = Entry {
                offset: publication.offset,
                frame,
                users,
            };
            state.keep(&log, entry, self.history.size, &self.budget);
        }
        drop(state);
        self.budget.enforce();
        Published {
            offset: publication.offset,
            recipients: fanout.queued,
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, publication: Publication) -> Result<Published, BrokerError> {
        Ok(self.publish_at_once(publication))
    }

    fn publish_now(&self, publication: Publication) -> PublishNow {
        PublishNow::Done(Ok(self.publish_at_once(publication)))
    }

    /// Every publication is delivered locally anyway; watching only keeps the group's
    /// state (and so its epoch) for as long as it has members here.
    async fn watch(&self, group: &GroupName) -> Result<(), BrokerError> {
        let mut shard = self.shard(group);
        let log = shard
            .entry(group.clone())
            .or_insert_with(|| Arc::new(Log::new()));
        log.watched.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A group that was never notified is forgotten at once; others when idle.
    async fn unwatch(&self, group: &GroupName) -> Result<(), BrokerError> {
        let mut shard = self.shard(group);
        if let Some(log) = shard.get(group) {
            log.watched.store(false, Ordering::Relaxed);
            if log.touched.load(Ordering::Relaxed) == 0 {
                shard.remove(group);
            }
        }
        Ok(())
    }

    /// Waits for a publication being delivered to finish, so a joining member's position
    /// is on one side of it.
    async fn position(&self, group: &GroupName) -> Result<Position, BrokerError> {
        Ok(match self.log(group) {
            Some(log) => log.state().position(),
            None => Position {
                offset: 0,
                epoch: self.boot_epoch.clone(),
            },
        })
    }

    async fn history(
        &self,
        group: &GroupName,
        since: Offset,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError> {
        let Some(log) = self.log(group) else {
            let position = self.position(group).await?;
            return Ok(HistoryRead {
                first: 1,
                position,
                entries: Vec::new(),
            });
        };
        let mut state = log.state();
        // The sweeper may not have run yet: history past its TTL is gone all the same.
        if log.idle_ms(self.now_ms()) >= Self::ms(self.history.ttl) {
            state.forget_history();
        }
        Ok(HistoryRead {
            position: state.position(),
            first: state.first(),
            entries: state.after(since, limit),
        })
    }

    fn history_usage(&self) -> HistoryUsage {
        let (entries, bytes) = self.budget.usage();
        HistoryUsage { entries, bytes }
    }

    async fn close_group(&self, group: &GroupName, close: Close) -> Result<usize, BrokerError> {
        Ok(self.local.close_group(group, &close))
    }

    async fn close_user(&self, user: &UserId, close: Close) -> Result<usize, BrokerError> {
        Ok(self.local.close_user(user, &close))
    }

    async fn group_count(
        &self,
        group: &GroupName,
        limit: usize,
    ) -> Result<GroupCount, BrokerError> {
        let hub = self.local.hub();
        Ok(GroupCount {
            subscribers: hub.subscribers(group),
            users: hub.group_users(group, limit),
        })
    }

    async fn groups(&self, limit: usize) -> Result<(Vec<(GroupName, usize)>, usize), BrokerError> {
        Ok(self.local.hub().groups(limit))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
