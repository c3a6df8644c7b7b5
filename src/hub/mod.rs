//! This node's registry of groups and their local members, and local fan-out.
//!
//! The hub knows nothing about warp, HTTP or Redis: the broker calls [`Hub::deliver`]
//! with a frame that is already encoded, and the hub hands the same bytes to every member.
//!
//! Locks are `std::sync::RwLock`s held for short, non-async critical sections (mini-redis'
//! reasoning: a tokio lock would only add overhead since nothing awaits while holding it).
//! Groups are spread over [`SHARDS`] locks so joins in one group do not wait for a large
//! fan-out in another.

mod member;

pub use member::{ConnId, Delivery, Member, Outbound};

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::protocol::GroupName;

/// Number of lock shards for the group map.
pub const SHARDS: usize = 64;

type Members = HashMap<ConnId, Member>;
type Shard = HashMap<GroupName, Members>;

/// Groups and their members on this node.
#[derive(Debug)]
pub struct Hub {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

/// Outcome of one local fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Members the frame was queued for.
    pub queued: usize,
    /// Members being closed because their queue was full.
    pub slow: usize,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        let shards = (0..SHARDS).map(|_| RwLock::new(Shard::new())).collect();
        Self {
            shards,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, group: &GroupName) -> &RwLock<Shard> {
        let i = self.hasher.hash_one(group) as usize % SHARDS;
        &self.shards[i]
    }

    // A poisoned lock means a panic happened while holding it; the maps are still
    // structurally valid, so keep serving instead of turning one bug into an outage.
    fn read(&self, group: &GroupName) -> RwLockReadGuard<'_, Shard> {
        self.shard(group).read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, group: &GroupName) -> RwLockWriteGuard<'_, Shard> {
        self.shard(group).write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `member` to `group` (`group_add`). Returns true when it is the group's first
    /// local member, the moment a broker starts watching the group.
    pub fn join(&self, group: &GroupName, member: Member) -> bool {
        let mut shard = self.write(group);
        let members = shard.entry(group.clone()).or_default();
        members.insert(member.id(), member);
        members.len() == 1
    }

    /// Removes connection `id` from `group` (`group_discard`). Returns true when the
    /// group has no local member left.
    pub fn leave(&self, group: &GroupName, id: ConnId) -> bool {
        let mut shard = self.write(group);
        let Some(members) = shard.get_mut(group) else {
            return false;
        };
        if members.remove(&id).is_none() {
            return false;
        }
        let empty = members.is_empty();
        if empty {
            shard.remove(group);
        }
        empty
    }

    /// Hands `frame`, a complete encoded WebSocket frame, to every local member of
    /// `group`. The bytes are shared, not copied: a clone only bumps a reference count.
    pub fn deliver(&self, group: &GroupName, frame: &Bytes) -> Fanout {
        let shard = self.read(group);
        let mut out = Fanout::default();
        for member in shard.get(group).into_iter().flat_map(|m| m.values()) {
            match member.try_deliver(frame) {
                Delivery::Queued => out.queued += 1,
                Delivery::Slow => out.slow += 1,
                Delivery::Gone => {}
            }
        }
        out
    }

    /// Removes every local member of `group` and closes each connection with `frame`
    /// after what is already queued for it. Returns how many connections were closed.
    pub fn close_group(&self, group: &GroupName, frame: &CloseFrame) -> usize {
        let removed = self.write(group).remove(group).unwrap_or_default();
        for member in removed.values() {
            member.close_after_queued(frame.clone());
        }
        removed.len()
    }

    /// Local members of `group`.
    pub fn subscribers(&self, group: &GroupName) -> usize {
        self.read(group).get(group).map_or(0, |m| m.len())
    }

    /// Up to `limit` groups with local members, sorted by name, with their member counts,
    /// and the total number of such groups.
    pub fn groups(&self, limit: usize) -> (Vec<(GroupName, usize)>, usize) {
        let mut all: Vec<(GroupName, usize)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            all.extend(shard.iter().map(|(g, m)| (g.clone(), m.len())));
        }
        let total = all.len();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        (all, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn member(id: ConnId) -> Member {
        Member::new(id, 8, CancellationToken::new())
    }

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    fn frame(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn deliver_reaches_members_of_that_group_only() {
        let hub = Hub::new();
        let (a, b) = (member(1), member(2));
        assert!(hub.join(&g("a"), a.clone()));
        assert!(hub.join(&g("b"), b.clone()));
        let out = hub.deliver(&g("a"), &frame("hi"));
        assert_eq!(out, Fanout { queued: 1, slow: 0 });
        assert_eq!(a.take(), [Outbound::Frame(frame("hi"))]);
        assert!(b.take().is_empty());
    }

    #[test]
    fn leave_reports_the_last_member_and_forgets_the_group() {
        let hub = Hub::new();
        hub.join(&g("x"), member(1));
        assert!(!hub.join(&g("x"), member(2)));
        assert!(!hub.leave(&g("x"), 1));
        assert!(!hub.leave(&g("x"), 1), "second leave is a no-op");
        assert!(hub.leave(&g("x"), 2));
        assert_eq!(hub.groups(10), (vec![], 0));
    }

    #[test]
    fn close_group_empties_it_and_queues_the_close() {
        let hub = Hub::new();
        let a = member(1);
        hub.join(&g("x"), a.clone());
        let close = crate::protocol::close::application_close(4321, "bye").unwrap();
        assert_eq!(hub.close_group(&g("x"), &close), 1);
        assert_eq!(hub.subscribers(&g("x")), 0);
        assert_eq!(a.take(), [Outbound::Close(close)]);
    }

    #[test]
    fn groups_lists_sorted_and_bounded() {
        let hub = Hub::new();
        for (i, name) in ["c", "a", "b"].iter().enumerate() {
            hub.join(&g(name), member(i as ConnId));
        }
        let (list, total) = hub.groups(2);
        assert_eq!(total, 3);
        assert_eq!(list, vec![(g("a"), 1), (g("b"), 1)]);
    }
}
