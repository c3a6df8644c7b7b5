//! The one bound on all groups' history together (`--history-max-bytes`): every kept
//! entry is counted here, and past the bound the oldest entries, whatever their group,
//! are dropped first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::log::{Log, Stored};
use crate::protocol::Offset;

/// Bytes counted per entry on top of its frame: the shared entry, its ring slot, its slot
/// in the eviction order and the frame's shared header (measured sizes, rounded up).
pub(super) const ENTRY_OVERHEAD: usize = 160;

/// An entry in the eviction order: its log, the entry (gone when it left its ring some
/// other way) and its offset.
type Kept = (Weak<Log>, Weak<Stored>, Offset);

/// Bytes and entries all history holds, and the order entries were kept in.
#[derive(Debug)]
pub(super) struct Budget {
    max: usize,
    bytes: AtomicUsize,
    entries: AtomicUsize,
    /// Every kept entry in the order it was kept (so oldest first), by weak reference:
    /// an entry that left its ring some other way (ring full, TTL) is skipped when
    /// reached, and pruned in bulk when such leftovers outnumber the live entries.
    order: Mutex<VecDeque<Kept>>,
}

impl Budget {
    /// A budget of `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Self {
            max,
            bytes: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            order: Mutex::new(VecDeque::new()),
        }
    }

    fn order(&self) -> MutexGuard<'_, VecDeque<Kept>> {
        // A VecDeque of weak references is consistent between statements: keep serving.
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new entry of `log`, kept as `stored`.
    pub(super) fn keep(&self, log: &Arc<Log>, stored: &Arc<Stored>) {
        self.bytes.fetch_add(stored.size, Ordering::Relaxed);
        let live = self.entries.fetch_add(1, Ordering::Relaxed) + 1;
        let mut order = self.order();
        order.push_back((
            Arc::downgrade(log),
            Arc::downgrade(stored),
            stored.entry.offset,
        ));
        if order.len() > 2 * live + 1024 {
            order.retain(|(_, s, _)| s.strong_count() > 0);
        }
    }

    /// Uncounts an entry that is gone (called when it is dropped, however it left).
    pub(super) fn release(&self, size: usize) {
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.entries.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops the oldest entries until the total is within the bound. Call with no log
    /// locked: it locks each victim's log in turn.
    pub(super) fn enforce(&self) {
        while self.bytes.load(Ordering::Relaxed) > self.max {
            let Some((log, stored, offset)) = self.order().pop_front() else {
                return;
            };
            if stored.strong_count() == 0 {
                continue;
            }
            if let Some(log) = log.upgrade() {
                log.state().drop_through(offset);
            }
        }
    }

    /// Entries and bytes held now.
    pub(super) fn usage(&self) -> (usize, usize) {
        (
            self.entries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}
