//! A hash map split over [`SHARDS`] `std` read-write locks, so work on one key (a join,
//! a large fan-out) does not wait for work on another.

use std::hash::{BuildHasher, Hash};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::hash::{self, HashMap, RandomState};

/// Number of lock shards per map.
pub const SHARDS: usize = 64;

/// `K -> V` over [`SHARDS`] locks, hashed with [`crate::hash`]. Critical sections are
/// short and never await, which is why these are `std` locks rather than tokio ones.
#[derive(Debug)]
pub(super) struct Sharded<K, V> {
    shards: Box<[RwLock<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    pub(super) fn new() -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(hash::map())).collect();
        Self {
            shards,
            hasher: hash::random_state(),
        }
    }

    fn shard(&self, key: &K) -> &RwLock<HashMap<K, V>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    // A poisoned lock means a panic happened while holding it; the maps are still
    // structurally valid, so keep serving instead of turning one bug into an outage.

    /// The shard holding `key`, for reading.
    pub(super) fn read(&self, key: &K) -> RwLockReadGuard<'_, HashMap<K, V>> {
        self.shard(key).read().unwrap_or_else(|p| p.into_inner())
    }

    /// The shard holding `key`, for writing.
    pub(super) fn write(&self, key: &K) -> RwLockWriteGuard<'_, HashMap<K, V>> {
        self.shard(key).write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every shard in turn, for reading (one lock held at a time).
    pub(super) fn each(&self) -> impl Iterator<Item = RwLockReadGuard<'_, HashMap<K, V>>> {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()))
    }
}
