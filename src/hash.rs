//! The hasher of the maps keyed by names clients choose (group names, user ids) on the
//! publish path: the hub's shards and the memory broker's group table.
//!
//! A publish looks its group up about four times (shard, then map, in the broker and in
//! the hub). std's SipHash costs several times more per short name than foldhash, so
//! these maps use foldhash. Its keys come from std's `RandomState`, which draws them
//! from the operating system: foldhash's own seed is only address-space randomness, and
//! names that collide must not be choosable by a client (HashDoS).

use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// A randomly keyed foldhash builder.
pub type RandomState = SeedableRandomState;

/// A `HashMap` with a [`RandomState`].
pub type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;

/// A new [`RandomState`]: the process's random shared key, and a random key of its own.
pub fn random_state() -> RandomState {
    static SHARED: OnceLock<SharedSeed> = OnceLock::new();
    let shared = SHARED.get_or_init(|| SharedSeed::from_u64(os_random()));
    SeedableRandomState::with_seed(os_random(), shared)
}

/// An empty [`HashMap`].
pub fn map<K, V>() -> HashMap<K, V> {
    HashMap::with_hasher(random_state())
}

/// 64 bits derived from the operating system's randomness (std keys every
/// `RandomState` from it; each new one gets new keys).
fn os_random() -> u64 {
    std::hash::RandomState::new().hash_one(0x9e37_79b9_7f4a_7c15_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_are_keyed_apart_and_maps_work() {
        let (a, b) = (random_state(), random_state());
        assert_ne!(a.hash_one("room:1"), b.hash_one("room:1"));
        assert_eq!(a.hash_one("room:1"), a.hash_one("room:1"));
        let mut m = map();
        m.insert("a", 1);
        assert_eq!(m.get("a"), Some(&1));
    }
}
