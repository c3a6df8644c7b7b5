//! One group on this node: its local members and where its local delivery stands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::drain::{Drains, Share};
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
    members: HashMap<ConnId, Member>,
    /// `members` split over the drains, made by the first fan-out that needs it after a
    /// join or leave: the fan-outs between two changes all share it, so handing a
    /// fan-out to the drains costs the publishing call no per-member work.
    snapshot: OnceLock<Box<[Share]>>,
    /// Fan-outs handed to the drains and not yet written. While any is, every fan-out
    /// here goes through the drains too, so none overtakes them.
    pending: Arc<AtomicUsize>,
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
    /// The broker's epoch for the group: learnt when the watch started, and replaced
    /// when a publication comes in another one, because the group's broker state was
    /// created again while the node kept watching (Redis keys expired or flushed, a
    /// failover to an empty replica). Locked only then: a join or a sync holds the
    /// shard's write lock and reaches it through `&mut`, and deliveries compare
    /// `fingerprint` instead.
    epoch: Mutex<Epoch>,
    /// [`fingerprint`] of `epoch`, so that a delivery (under the read lock) tells the
    /// group's epoch from another one with one atomic load.
    fingerprint: AtomicU64,
}

/// A 64-bit FNV-1a hash of `epoch`: cheap for the few bytes of an epoch, and the same in
/// every group, so comparing two is comparing the epochs (two different epochs of one
/// group collide with probability 2^-64).
fn fingerprint(epoch: &Epoch) -> u64 {
    epoch
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl Group {
    /// A group the node has just started to watch; `pending` counts the fan-outs still
    /// in the drains of the group of that name the node had before, if any (see
    /// `Hub::retire`).
    pub(super) fn syncing(pending: Arc<AtomicUsize>) -> Self {
        Self {
            members: HashMap::new(),
            snapshot: OnceLock::new(),
            pending,
            last: AtomicU64::new(0),
            syncing: AtomicBool::new(true),
            first: AtomicU64::new(0),
            fanned_at: AtomicU64::new(0),
            fingerprint: AtomicU64::new(fingerprint(&Epoch::default())),
            epoch: Mutex::new(Epoch::default()),
        }
    }

    /// The local members.
    pub(super) fn members(&self) -> &HashMap<ConnId, Member> {
        &self.members
    }

    /// Takes the local members (the group is being closed).
    pub(super) fn into_members(self) -> HashMap<ConnId, Member> {
        self.members
    }

    /// Adds a member (a join, under the shard's write lock).
    pub(super) fn insert(&mut self, member: Member) {
        self.snapshot.take();
        self.members.insert(member.id(), member);
    }

    /// Removes a member; false when it was not one.
    pub(super) fn remove(&mut self, id: ConnId) -> bool {
        let removed = self.members.remove(&id).is_some();
        if removed {
            self.snapshot.take();
        }
        removed
    }

    /// Every member, split over `drains` (see [`Drains::split`]); built once per change
    /// of the members.
    pub(super) fn snapshot(&self, drains: &Drains) -> &[Share] {
        self.snapshot
            .get_or_init(|| drains.split(self.members.values()))
    }

    /// The count of this group's fan-outs not yet written by the drains.
    pub(super) fn pending(&self) -> &Arc<AtomicUsize> {
        &self.pending
    }

    /// The group's epoch, through `&mut` (the shard's write lock): no locking.
    fn epoch_mut(&mut self) -> &mut Epoch {
        // A poisoned lock still holds a whole `Epoch` (it is only ever replaced).
        self.epoch.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// The position a joining member is told, once synced. Taken with the shard's write
    /// lock, so no delivery is half done.
    pub(super) fn position(&mut self) -> Position {
        Position {
            offset: self.last.load(Ordering::Acquire),
            epoch: self.epoch_mut().clone(),
        }
    }

    /// Whether the publication at `offset` in `epoch` is new here, recording it when it
    /// is. In the group's epoch, one the node already delivered (or that predates the
    /// synced position) is stale: a broker may hand it over twice around a
    /// (re)subscription, and members must not see it twice. In another epoch (once
    /// synced), the group's broker state was created again and its offsets started
    /// over: the group is re-based on it (members joining from now on are told the new
    /// epoch) and it is delivered, rather than dropped until the new offsets pass the
    /// old ones. The broker delivers a group in order, so the old epoch does not come
    /// back after the new one.
    pub(super) fn admit(&self, offset: Offset, epoch: &Epoch) -> bool {
        if self.syncing.load(Ordering::Acquire) {
            let _ = self
                .first
                .compare_exchange(0, offset, Ordering::AcqRel, Ordering::Acquire);
        } else {
            let print = fingerprint(epoch);
            if print != self.fingerprint.load(Ordering::Acquire) {
                // Rare (once per re-creation): the lock is uncontended, since a group
                // has one delivering task and joins hold the write lock.
                *self.epoch.lock().unwrap_or_else(|p| p.into_inner()) = epoch.clone();
                self.fingerprint.store(print, Ordering::Release);
            } else if offset <= self.last.load(Ordering::Acquire) {
                return false;
            }
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
        self.fingerprint
            .store(fingerprint(&epoch), Ordering::Release);
        *self.epoch_mut() = epoch;
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
            epoch: self.epoch_mut().clone(),
        }
    }
}
