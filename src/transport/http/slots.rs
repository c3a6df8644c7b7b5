//! `--max-http-connections`: a cap on plain-HTTP connections per listener, where a new
//! connection at the cap evicts the connection that has waited longest for a request
//! (idle keep-alive or a head still arriving) instead of being refused. A slowloris
//! therefore cannot keep out clients that send whole requests promptly; only when every
//! slot is busy with a request is a new connection answered 503.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a new connection waits for an evicted one to give its slot back.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The connection slots of one listener.
pub(super) struct Slots {
    permits: Arc<Semaphore>,
    /// Connections waiting for a request, oldest wait first, with their eviction tokens.
    waiting: Mutex<BTreeMap<u64, CancellationToken>>,
    next_key: AtomicU64,
}

impl Slots {
    /// `max` connections at once.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            waiting: Mutex::new(BTreeMap::new()),
            next_key: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection: a free one, or the one given back by evicting the
    /// longest-waiting connection. `None` when every connection is busy with a request.
    pub(super) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        let victim = self.lock().pop_first();
        let (_, evict) = victim?;
        evict.cancel();
        tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Lists a connection as waiting; returns its key for [`Slots::stop_waiting`].
    pub(super) fn wait(&self, evict: CancellationToken) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, evict);
        key
    }

    /// The connection with `key` is busy or gone.
    pub(super) fn stop_waiting(&self, key: u64) {
        self.lock().remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CancellationToken>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_listener_evicts_the_longest_waiting_connection() {
        let slots = Slots::new(2);
        let first = slots.admit().await.expect("free slot");
        let second = slots.admit().await.expect("free slot");
        let old = CancellationToken::new();
        let new = CancellationToken::new();
        let old_key = slots.wait(old.clone());
        slots.wait(new.clone());
        // The evicted connection gives its slot back when its task sees the token.
        let give_back = tokio::spawn({
            let old = old.clone();
            async move {
                old.cancelled().await;
                drop(first);
            }
        });
        assert!(slots.admit().await.is_some());
        assert!(old.is_cancelled() && !new.is_cancelled());
        give_back.await.unwrap();
        slots.stop_waiting(old_key);
        drop(second);
    }

    #[tokio::test]
    async fn a_listener_whose_connections_are_all_busy_refuses() {
        let slots = Slots::new(1);
        let _busy = slots.admit().await.expect("free slot");
        assert!(slots.admit().await.is_none());
    }
}
