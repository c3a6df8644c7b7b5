//! One group's state in the memory broker: its offset, its epoch and its history ring.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::budget::{Budget, ENTRY_OVERHEAD};
use crate::broker::history::Entry;
use crate::protocol::{Epoch, Offset, Position};

/// A group the broker knows: notified recently, or watched by this node.
///
/// `watched` and `touched` are only written while the shard's map lock is held, so the
/// sweeper, which decides under the same lock, never removes a log that a join or a
/// publish is about to use.
#[derive(Debug)]
pub(super) struct Log {
    /// Whether this node watches the group (it has local members).
    pub(super) watched: AtomicBool,
    /// When the group was last notified, in the broker's clock (milliseconds since it
    /// started, plus one); 0: never notified.
    pub(super) touched: AtomicU64,
    /// Held while a publication is delivered, which keeps offsets in order on every
    /// connection, and while history is read, which makes a read see whole publications.
    state: Mutex<State>,
}

/// What a log's mutex guards.
#[derive(Debug)]
pub(super) struct State {
    pub(super) offset: Offset,
    pub(super) epoch: Epoch,
    /// The latest entries, oldest first, contiguous in offset.
    ring: VecDeque<Arc<Stored>>,
}

/// An entry as a ring keeps it: counted in the budget until it is dropped.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) entry: Entry,
    pub(super) size: usize,
    budget: Arc<Budget>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.budget.release(self.size);
    }
}

impl Log {
    /// A log in a new epoch, offset 0.
    pub(super) fn new() -> Self {
        Self {
            watched: AtomicBool::new(false),
            touched: AtomicU64::new(0),
            state: Mutex::new(State {
                offset: 0,
                epoch: Epoch::random(),
                ring: VecDeque::new(),
            }),
        }
    }

    /// Locks the state. Poisoning cannot leave it inconsistent (every change is one
    /// statement): keep serving.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state, unless a publication holds it now.
    pub(super) fn try_state(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Milliseconds since the last notification at `now` (`u64::MAX`: never notified).
    pub(super) fn idle_ms(&self, now: u64) -> u64 {
        match self.touched.load(Ordering::Relaxed) {
            0 => u64::MAX,
            t => now.saturating_sub(t),
        }
    }
}

impl State {
    /// The group's position.
    pub(super) fn position(&self) -> Position {
        Position {
            offset: self.offset,
            epoch: self.epoch.clone(),
        }
    }

    /// Keeps `entry` (the latest publication) as the newest of at most `size` entries,
    /// counting it in `budget`.
    pub(super) fn keep(&mut self, log: &Arc<Log>, entry: Entry, size: usize, budget: &Arc<Budget>) {
        let users: usize = entry
            .users
            .as_ref()
            .map_or(0, |u| u.iter().map(|u| u.as_str().len() + 32).sum());
        let stored = Arc::new(Stored {
            size: entry.frame.len() + users + ENTRY_OVERHEAD,
            entry,
            budget: budget.clone(),
        });
        budget.keep(log, &stored);
        self.ring.push_back(stored);
        while self.ring.len() > size {
            self.ring.pop_front();
        }
    }

    /// Drops the entries up to and including `offset` (the budget's oldest).
    pub(super) fn drop_through(&mut self, offset: Offset) {
        while self.ring.front().is_some_and(|s| s.entry.offset <= offset) {
            self.ring.pop_front();
        }
    }

    /// Drops every entry (the TTL passed).
    pub(super) fn forget_history(&mut self) {
        self.ring = VecDeque::new();
    }

    /// The oldest kept offset; `offset + 1` when nothing is kept.
    pub(super) fn first(&self) -> Offset {
        self.ring
            .front()
            .map_or(self.offset + 1, |s| s.entry.offset)
    }

    /// Up to `limit` kept entries after `since`, oldest first.
    pub(super) fn after(&self, since: Offset, limit: usize) -> Vec<Entry> {
        // Entries are contiguous, so the first one after `since` is found by arithmetic.
        let skip = usize::try_from((since + 1).saturating_sub(self.first())).unwrap_or(usize::MAX);
        self.ring
            .iter()
            .skip(skip)
            .take(limit)
            .map(|s| s.entry.clone())
            .collect()
    }
}
