//! One group on this node: its local members and where its local delivery stands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{ConnId, Member};
use crate::protocol::{Epoch, Offset, Position};

/// The local members of a group, and the position that makes joining exact: a member
/// that joins is told the offset of the last publication delivered here, and receives
/// exactly the ones after it.
///
/// The position is atomic because deliveries run under the shard's *read* lock (a large
/// fan-out must not block joins in other groups of the shard), while a join or the end
/// of a sync holds the *write* lock, so either sees a delivery entirely or not at all.
/// Each group has one delivering task at a time (the broker's order), so the atomics
/// never race with each other.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) members: HashMap<ConnId, Member>,
    /// Offset of the last publication delivered here, or the broker's offset when the
    /// node started watching the group, whichever is later.
    last: AtomicU64,
    /// Set while the node is starting (or restarting) to watch the group and does not
    /// know the broker's offset yet; every publication is delivered and the first one is
    /// remembered in `first`.
    syncing: AtomicBool,
    /// First offset delivered while syncing (0: none yet).
    first: AtomicU64,
    /// When the last fan-out here started, in nanoseconds since the hub was created (0:
    /// none yet): tells a burst from a steady flow (see [`Group::in_burst`]).
    fanned_at: AtomicU64,
    /// The broker's epoch for the group, learnt when the watch started. It only changes
    /// when the group's broker state is created again, which happens only while no node
    /// watches the group (memory broker) or never (Redis keeps it), so it is fixed for
    /// as long as this entry exists.
    epoch: Epoch,
}

impl Group {
    /// A group the node has just started to watch.
    pub(super) fn syncing() -> Self {
        Self {
            members: HashMap::new(),
            last: AtomicU64::new(0),
            syncing: AtomicBool::new(true),
            first: AtomicU64::new(0),
            fanned_at: AtomicU64::new(0),
            epoch: Epoch::default(),
        }
    }

    /// The position a joining member is told, once synced.
    pub(super) fn position(&self) -> Position {
        Position {
            offset: self.last.load(Ordering::Acquire),
            epoch: self.epoch.clone(),
        }
    }

    /// Whether a publication at `offset` is new here, recording it when it is. One the
    /// node already delivered (or that predates the synced position) is stale: a broker
    /// may hand it over twice around a (re)subscription, and members must not see it twice.
    pub(super) fn admit(&self, offset: Offset) -> bool {
        if self.syncing.load(Ordering::Acquire) {
            let _ = self
                .first
                .compare_exchange(0, offset, Ordering::AcqRel, Ordering::Acquire);
        } else if offset <= self.last.load(Ordering::Acquire) {
            return false;
        }
        self.last.store(offset, Ordering::Release);
        true
    }

    /// Records a fan-out starting at `now` (nanoseconds since the hub was created); true
    /// when the previous one started less than `gap` nanoseconds before: a burst, whose
    /// frames are better queued so that a drain writes several of them at once.
    pub(super) fn in_burst(&self, now: u64, gap: u64) -> bool {
        let previous = self.fanned_at.swap(now.max(1), Ordering::Relaxed);
        previous != 0 && now.saturating_sub(previous) < gap
    }

    /// Marks the group as (re)starting to watch: see [`Group::synced`].
    pub(super) fn resync(&self) {
        self.first.store(0, Ordering::Release);
        self.syncing.store(true, Ordering::Release);
    }

    /// Ends a sync with the broker's offset, read after the watch took effect. Returns
    /// the position members joining now are told: every publication after it reaches them.
    ///
    /// The broker delivers in offset order from the moment the watch took effect, so what
    /// was delivered while syncing is one unbroken run from `first`: the position is just
    /// before it. When nothing came, the broker's offset is the position, and anything at
    /// or before it that still arrives is stale.
    pub(super) fn synced(&mut self, broker: Position) -> Position {
        let Position {
            offset: broker_offset,
            epoch,
        } = broker;
        self.epoch = epoch;
        let first = self.first.load(Ordering::Acquire);
        let position = if first == 0 {
            self.last.store(broker_offset, Ordering::Release);
            broker_offset
        } else {
            first - 1
        };
        self.syncing.store(false, Ordering::Release);
        Position {
            offset: position,
            epoch: self.epoch.clone(),
        }
    }
}
