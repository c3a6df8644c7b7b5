//! `--max-http-connections`: a cap on plain-HTTP connections per listener, where a new
//! connection at the cap evicts the connection that has waited longest for a request
//! (idle keep-alive or a head still arriving) instead of being refused. A slowloris
//! therefore cannot keep out clients that send whole requests promptly; only when every
//! slot is busy with a request is a new connection answered 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a new connection waits for an evicted one to give its slot back.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// One connection's place on its listener, counted in `herald_http_connections` for as
/// long as it is held.
pub(super) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A connection's entry in its listener's waiting list.
///
/// The list is only brought up to date when a connection must be evicted: a request
/// starting or ending just flips `waiting` and takes a new `since`, rather than taking
/// the list's lock to move the connection out and back in (which cost more than the
/// rest of a small request's bookkeeping).
pub(super) struct Waiter {
    /// Cancelled to evict the connection.
    evict: CancellationToken,
    /// Waiting for (or reading) a request head, so evictable.
    waiting: AtomicBool,
    /// When the current wait began, as a number from the listener's sequence.
    since: AtomicU64,
    /// The key the connection is listed under (an earlier `since`, until the list is
    /// brought up to date); changed only under the list's lock.
    listed: AtomicU64,
}

impl Waiter {
    /// A connection about to be listed, evicted through `evict`.
    pub(super) fn new(evict: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            evict,
            waiting: AtomicBool::new(false),
            since: AtomicU64::new(0),
            listed: AtomicU64::new(0),
        })
    }

    /// A request began: not evictable until it is answered.
    pub(super) fn busy(&self) {
        self.waiting.store(false, Ordering::Release);
    }
}

/// The connection slots of one listener.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    /// `herald_http_connections`.
    open: IntGauge,
    /// Every connection of the listener, by when its wait began as of when it was last
    /// put in order (see [`Waiter`]).
    waiting: Mutex<BTreeMap<u64, Arc<Waiter>>>,
    next_key: AtomicU64,
}

impl Slots {
    /// `max` connections at once, each counted in `open` while it holds its slot.
    pub(super) fn new(max: usize, open: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            open,
            waiting: Mutex::new(BTreeMap::new()),
            next_key: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, or the one given back by evicting the
    /// longest-waiting connection. `None` when every connection is busy with a request.
    pub(super) async fn admit(&self) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.longest_waiting()?.evict.cancel();
                tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        self.open.inc();
        Some(Slot {
            _permit: permit,
            open: self.open.clone(),
        })
    }

    /// Takes the connection that has waited longest for a request off the list, putting
    /// the entries it passes in order: one whose wait began later than its key says goes
    /// back under its wait's start, a busy one stays under its key.
    fn longest_waiting(&self) -> Option<Arc<Waiter>> {
        let mut list = self.lock();
        let mut busy = Vec::new();
        let found = loop {
            let Some((key, waiter)) = list.pop_first() else {
                break None;
            };
            if !waiter.waiting.load(Ordering::Acquire) {
                busy.push((key, waiter));
                continue;
            }
            let since = waiter.since.load(Ordering::Acquire);
            if since != key {
                // Its wait began later (keys only grow): it goes back behind the others.
                waiter.listed.store(since, Ordering::Release);
                list.insert(since, waiter);
                continue;
            }
            break Some(waiter);
        };
        list.extend(busy);
        found
    }

    /// Lists a new connection, waiting for its first request.
    pub(super) fn list(&self, waiter: &Arc<Waiter>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut list = self.lock();
        waiter.since.store(key, Ordering::Release);
        waiter.listed.store(key, Ordering::Release);
        waiter.waiting.store(true, Ordering::Release);
        list.insert(key, waiter.clone());
    }

    /// A listed connection waits for its next request from now on.
    pub(super) fn wait_again(&self, waiter: &Waiter) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        waiter.since.store(key, Ordering::Release);
        waiter.waiting.store(true, Ordering::Release);
    }

    /// The connection is gone or no longer plain HTTP (or was evicted already).
    pub(super) fn unlist(&self, waiter: &Waiter) {
        waiter.waiting.store(false, Ordering::Release);
        let mut list = self.lock();
        let key = waiter.listed.load(Ordering::Acquire);
        if list
            .get(&key)
            .is_some_and(|listed| std::ptr::eq(Arc::as_ptr(listed), waiter))
        {
            list.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Waiter>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_listener_evicts_the_longest_waiting_connection() {
        let open = IntGauge::new("open", "open").unwrap();
        let slots = Slots::new(2, open.clone());
        let first = slots.admit().await.expect("free slot");
        let second = slots.admit().await.expect("free slot");
        let old = CancellationToken::new();
        let new = CancellationToken::new();
        let (old_waiter, new_waiter) = (Waiter::new(old.clone()), Waiter::new(new.clone()));
        slots.list(&old_waiter);
        slots.list(&new_waiter);
        // The evicted connection gives its slot back when its task sees the token.
        let give_back = tokio::spawn({
            let old = old.clone();
            async move {
                old.cancelled().await;
                drop(first);
            }
        });
        let third = slots.admit().await;
        assert!(third.is_some());
        assert!(old.is_cancelled() && !new.is_cancelled());
        give_back.await.unwrap();
        assert_eq!(open.get(), 2);
        slots.unlist(&old_waiter);
        slots.unlist(&new_waiter);
        assert!(slots.lock().is_empty());
        drop((second, third));
        assert_eq!(open.get(), 0);
    }

    #[tokio::test]
    async fn a_listener_whose_connections_are_all_busy_refuses() {
        let slots = Slots::new(1, IntGauge::new("open", "open").unwrap());
        let _busy = slots.admit().await.expect("free slot");
        assert!(slots.admit().await.is_none());
    }
}
