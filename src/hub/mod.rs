//! This node's registry of groups and their local members, and local fan-out.
//!
//! The hub knows nothing about warp, HTTP or Redis: the broker calls [`Hub::deliver`]
//! with a frame that is already encoded, and the hub hands the same bytes to every member.
//!
//! Locks are `std::sync::RwLock`s held for short, non-async critical sections (mini-redis'
//! reasoning: a tokio lock would only add overhead since nothing awaits while holding it).
//! Groups (and users) are spread over [`SHARDS`] locks so joins in one group do not wait
//! for a large fan-out in another.

mod member;
mod shard;

pub use member::{ConnId, Delivery, Member, Outbound};
pub use shard::SHARDS;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::protocol::{GroupName, UserId};
use shard::Sharded;

type Members = HashMap<ConnId, Member>;

/// Groups and their members on this node, and which connections belong to which user.
#[derive(Debug)]
pub struct Hub {
    groups: Sharded<GroupName, Members>,
    /// Connections of each authenticated user (for user close). Only members created with
    /// a user are in it, so it stays empty, and costs nothing, when auth is off.
    users: Sharded<UserId, Members>,
}

/// Outcome of one local fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Members the frame was queued for.
    pub queued: usize,
    /// Members being closed because their queue was full.
    pub slow: usize,
}

/// Which members of a group a publication is for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Every member.
    Everyone,
    /// Only connections whose user is in the set; the others never see the frame.
    Users(&'a HashSet<UserId>),
}

impl Audience<'_> {
    fn includes(&self, member: &Member) -> bool {
        match self {
            Self::Everyone => true,
            Self::Users(users) => member.user().is_some_and(|u| users.contains(u)),
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self {
            groups: Sharded::new(),
            users: Sharded::new(),
        }
    }

    /// Adds `member` to `group` (`group_add`). Returns true when it is the group's first
    /// local member, the moment a broker starts watching the group.
    pub fn join(&self, group: &GroupName, member: Member) -> bool {
        let mut shard = self.groups.write(group);
        let members = shard.entry(group.clone()).or_default();
        members.insert(member.id(), member);
        members.len() == 1
    }

    /// Removes connection `id` from `group` (`group_discard`). Returns true when the
    /// group has no local member left.
    pub fn leave(&self, group: &GroupName, id: ConnId) -> bool {
        remove(&self.groups, group, id)
    }

    /// Records `member` under its user, if it has one (call once per connection).
    pub fn register(&self, member: &Member) {
        if let Some(user) = member.user() {
            let mut shard = self.users.write(user);
            let conns = shard.entry(user.clone()).or_default();
            conns.insert(member.id(), member.clone());
        }
    }

    /// Forgets `member` under its user, when its connection ends.
    pub fn unregister(&self, member: &Member) {
        if let Some(user) = member.user() {
            remove(&self.users, user, member.id());
        }
    }

    /// Hands `frame`, a complete encoded WebSocket frame, to the local members of `group`
    /// in `audience`. The bytes are shared, not copied: a clone only bumps a reference
    /// count.
    pub fn deliver(&self, group: &GroupName, frame: &Bytes, audience: Audience<'_>) -> Fanout {
        let shard = self.groups.read(group);
        let mut out = Fanout::default();
        let Some(members) = shard.get(group) else {
            return out;
        };
        // One clock read per fan-out, not per member (and none for a group without
        // local members): the delivery-lag metric's start.
        let now = Instant::now();
        for member in members.values().filter(|m| audience.includes(m)) {
            match member.try_deliver_at(frame, now) {
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
        let removed = self.groups.write(group).remove(group).unwrap_or_default();
        close_all(&removed, frame)
    }

    /// Closes every local connection of `user` (all groups, all tabs) with `frame` after
    /// what is already queued for it. Returns how many connections were closed.
    pub fn close_user(&self, user: &UserId, frame: &CloseFrame) -> usize {
        let removed = self.users.write(user).remove(user).unwrap_or_default();
        close_all(&removed, frame)
    }

    /// Local members of `group`.
    pub fn subscribers(&self, group: &GroupName) -> usize {
        self.groups.read(group).get(group).map_or(0, |m| m.len())
    }

    /// Groups with local members and the memberships in them (for the metrics scrape;
    /// one shard lock at a time, so the two numbers are not one atomic snapshot).
    pub fn counts(&self) -> (usize, usize) {
        self.groups.each().fold((0, 0), |(groups, members), shard| {
            let here: usize = shard.values().map(HashMap::len).sum();
            (groups + shard.len(), members + here)
        })
    }

    /// Up to `limit` distinct users with a local connection in `group`, sorted.
    pub fn group_users(&self, group: &GroupName, limit: usize) -> Vec<UserId> {
        let shard = self.groups.read(group);
        let members = shard.get(group).into_iter().flat_map(|m| m.values());
        let users: BTreeSet<&UserId> = members.filter_map(Member::user).collect();
        users.into_iter().take(limit).cloned().collect()
    }

    /// Up to `limit` groups with local members, sorted by name, with their member counts,
    /// and the total number of such groups.
    pub fn groups(&self, limit: usize) -> (Vec<(GroupName, usize)>, usize) {
        let mut all: Vec<(GroupName, usize)> = Vec::new();
        for shard in self.groups.each() {
            all.extend(shard.iter().map(|(g, m)| (g.clone(), m.len())));
        }
        let total = all.len();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        (all, total)
    }
}

/// Removes connection `id` under `key`, dropping the key when it was the last one.
/// Returns true when that happened.
fn remove<K: std::hash::Hash + Eq>(map: &Sharded<K, Members>, key: &K, id: ConnId) -> bool {
    let mut shard = map.write(key);
    let Some(members) = shard.get_mut(key) else {
        return false;
    };
    if members.remove(&id).is_none() {
        return false;
    }
    let empty = members.is_empty();
    if empty {
        shard.remove(key);
    }
    empty
}

fn close_all(members: &Members, frame: &CloseFrame) -> usize {
    for member in members.values() {
        member.close_after_queued(frame.clone());
    }
    members.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn member(id: ConnId) -> Member {
        Member::new(id, 8, CancellationToken::new())
    }

    fn user_member(id: ConnId, user: &str) -> Member {
        let user = UserId::parse(user).unwrap();
        Member::for_user(id, 8, CancellationToken::new(), Some(user))
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
        let out = hub.deliver(&g("a"), &frame("hi"), Audience::Everyone);
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
    fn a_user_audience_reaches_only_those_users_members() {
        let hub = Hub::new();
        let (ana, ana2, bob, anon) = (
            user_member(1, "ana"),
            user_member(2, "ana"),
            user_member(3, "bob"),
            member(4),
        );
        for m in [&ana, &ana2, &bob, &anon] {
            hub.join(&g("x"), m.clone());
        }
        let only: HashSet<UserId> = [UserId::parse("ana").unwrap()].into();
        let out = hub.deliver(&g("x"), &frame("hi"), Audience::Users(&only));
        assert_eq!(out.queued, 2);
        assert_eq!((ana.take().len(), ana2.take().len()), (1, 1));
        assert!(bob.take().is_empty() && anon.take().is_empty());
        let users: Vec<String> = hub
            .group_users(&g("x"), 10)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(users, ["ana", "bob"]);
        assert_eq!(hub.group_users(&g("x"), 1).len(), 1);
    }

    #[test]
    fn close_user_closes_every_connection_of_that_user_only() {
        let hub = Hub::new();
        let (a1, a2, b) = (
            user_member(1, "a"),
            user_member(2, "a"),
            user_member(3, "b"),
        );
        for m in [&a1, &a2, &b] {
            hub.register(m);
        }
        hub.register(&member(4));
        let close = crate::protocol::close::application_close(4403, "banned").unwrap();
        assert_eq!(hub.close_user(&UserId::parse("a").unwrap(), &close), 2);
        assert_eq!(a1.take(), [Outbound::Close(close.clone())]);
        assert_eq!(a2.take(), [Outbound::Close(close.clone())]);
        assert!(b.take().is_empty());
        hub.unregister(&b);
        assert_eq!(hub.close_user(&UserId::parse("b").unwrap(), &close), 0);
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
