//! This node's registry of groups and their local members, and local fan-out.
//!
//! The hub knows nothing about warp, HTTP or Redis: the broker calls [`Hub::deliver`]
//! with a frame that is already encoded, and the hub hands the same bytes to every member.
//!
//! Locks are `std::sync::RwLock`s held for short, non-async critical sections (mini-redis'
//! reasoning: a tokio lock would only add overhead since nothing awaits while holding it).
//! Groups (and users) are spread over [`SHARDS`] locks so joins in one group do not wait
//! for a large fan-out in another.

mod drain;
mod group;
mod member;
mod output;
mod shard;
mod signal;

pub use member::{ConnId, Delivery, Member};
pub use output::{Flushed, Outbound};
pub use shard::SHARDS;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::metrics::Metrics;
use crate::protocol::{Close, Epoch, GroupName, Offset, Position, UserId};
use drain::Drains;
use group::Group;
use shard::Sharded;

type Members = HashMap<ConnId, Member>;

/// Groups of at most this many local members are written inline by the publishing call
/// (each idle member's socket gets the frame at once, see [`Member::try_write_at`]),
/// unless they are in a burst (see [`BURST_GAP`]) or have fan-outs pending in the
/// drains; larger ones are handed to the drains whole (one record per drain, see
/// `drain`), which write them after the publishing call returns and gather a burst
/// into one write per member. On 1,000 groups x 10 members,
/// inline writes deliver more per second than the drains, with a quarter of the p99
/// (BENCHMARKS.md, "inline writes for small groups"); on a burst they would cost one write
/// per frame per member where a drain writes several frames at once.
const INLINE_MAX: usize = 16;

/// A small group's fan-out that starts less than this many nanoseconds (1 ms) after its
/// previous one is part of a burst (publishers sending to the group back to back): its
/// frames are queued for the drains, so that the frames published meanwhile go out in the
/// same write.
const BURST_GAP: u64 = 1_000_000;

/// Groups and their members on this node, and which connections belong to which user.
///
/// A group exists here only while it has local members: the last leave (or a group
/// close) removes it, so group names a node no longer serves cost nothing.
#[derive(Debug)]
pub struct Hub {
    groups: Sharded<GroupName, Group>,
    /// Connections of each authenticated user (for user close). Only members created with
    /// a user are in it, so it stays empty, and costs nothing, when auth is off.
    users: Sharded<UserId, Members>,
    /// Write the queues that fan-outs fill (see `drain`).
    drains: Drains,
    /// The pending counts (see `Group::pending`) of groups forgotten while fan-outs to
    /// them were still in the drains. A group created again under that name before they
    /// are written takes its count over, so its first fan-outs queue behind them: a
    /// connection that left and joins again still gets the group's frames in order.
    retired: Sharded<GroupName, Arc<AtomicUsize>>,
    /// When the hub was created: group fan-out times are kept as nanoseconds since.
    started: Instant,
}

/// Outcome of one local fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Members the frame was handed to: written or queued at once, or (a large group,
    /// or one with fan-outs still pending) handed to the drains with the group's members
    /// at publication time.
    pub queued: usize,
    /// Members being closed because their queue was full (known at once only for
    /// frames written or queued at once; the drains count the others in the metrics).
    pub slow: usize,
}

/// What joining a group found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The group had no local member: the node must start watching it in the broker and
    /// then call [`Hub::synced`] with the broker's offset.
    First,
    /// The node already watches the group; the member receives every publication after
    /// this position.
    At(Position),
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
        Self::with_metrics(None)
    }

    /// An empty hub whose drains record the frames they write in `metrics`.
    pub fn with_metrics(metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            groups: Sharded::new(),
            users: Sharded::new(),
            drains: Drains::new(metrics),
            retired: Sharded::new(),
            started: Instant::now(),
        }
    }

    /// Adds `member` to `group` (`group_add`). [`Joined::First`] when it is the group's
    /// first local member, the moment the node starts watching the group in the broker.
    pub fn join(&self, group: &GroupName, member: Member) -> Joined {
        let mut shard = self.groups.write(group);
        let entry = shard.entry(group.clone()).or_insert_with(|| {
            let pending = self.retired.write(group).remove(group);
            Group::syncing(pending.unwrap_or_default())
        });
        let first = entry.members().is_empty();
        entry.insert(member);
        if first {
            Joined::First
        } else {
            Joined::At(entry.position())
        }
    }

    /// Ends the sync that [`Joined::First`] (or [`Hub::resync`]) started, with the
    /// broker's position read after the watch took effect; returns the position the
    /// members who joined are told (see `Group::synced`).
    pub fn synced(&self, group: &GroupName, broker: Position) -> Position {
        let mut shard = self.groups.write(group);
        match shard.get_mut(group) {
            Some(g) => g.synced(broker),
            None => broker,
        }
    }

    /// Marks `group` as re-watched (after a broker reconnect): deliveries are accepted as
    /// they come until [`Hub::synced`]. False when the group has no local members.
    pub fn resync(&self, group: &GroupName) -> bool {
        let shard = self.groups.write(group);
        shard.get(group).inspect(|g| g.resync()).is_some()
    }

    /// Removes connection `id` from `group` (`group_discard`). Returns true when that
    /// was its last local member: the group is forgotten and the node stops watching it.
    pub fn leave(&self, group: &GroupName, id: ConnId) -> bool {
        let mut shard = self.groups.write(group);
        let Some(entry) = shard.get_mut(group) else {
            return false;
        };
        if !entry.remove(id) {
            return false;
        }
        let empty = entry.members().is_empty();
        if empty {
            self.retire(group, entry);
            shard.remove(group);
        }
        empty
    }

    /// Keeps the pending count of `group`, being forgotten, while fan-outs to it are
    /// still in the drains (see `retired`); drops the counts that reached zero.
    fn retire(&self, group: &GroupName, entry: &Group) {
        let pending = entry.pending();
        if pending.load(Ordering::Acquire) > 0 {
            let mut retired = self.retired.write(group);
            retired.retain(|_, p| p.load(Ordering::Acquire) > 0);
            retired.insert(group.clone(), pending.clone());
        }
    }

    /// Every group with local members (the groups the node watches).
    pub fn group_names(&self) -> Vec<GroupName> {
        let mut all = Vec::new();
        for shard in self.groups.each() {
            all.extend(shard.keys().cloned());
        }
        all
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

    /// Hands `frame`, the complete encoded WebSocket frame of the publication at `offset`
    /// in `epoch`, to the local members of `group` in `audience`. A small group's idle
    /// members get it written at once (in a burst, it is queued on each member for the
    /// drains); a larger group's fan-out is handed to the drains whole, with the group's
    /// members as they are now, and written after this call returns (see `drain`). The
    /// bytes are shared, not copied: a clone only bumps a reference count. A publication
    /// this node already delivered (or one from before its members joined) is skipped:
    /// nobody sees an offset twice. One in a new epoch re-bases the group on it (see
    /// `Group::admit`).
    pub fn deliver(
        &self,
        group: &GroupName,
        offset: Offset,
        epoch: &Epoch,
        frame: &Bytes,
        audience: Audience<'_>,
    ) -> Fanout {
        let shard = self.groups.read(group);
        let Some(entry) = shard.get(group).filter(|g| g.admit(offset, epoch)) else {
            return Fanout::default();
        };
        // One clock read per fan-out, not per member (and none for a group without
        // local members): the delivery-lag metric's start.
        let now = Instant::now();
        // While earlier fan-outs of the group wait in the drains, this one must queue
        // behind them; so must a large group's, so that the publisher does not wait
        // for it.
        let small =
            entry.members().len() <= INLINE_MAX && entry.pending().load(Ordering::Acquire) == 0;
        if small {
            return self.deliver_small(entry, frame, now, audience);
        }
        let filtered;
        let shares = match audience {
            Audience::Everyone => entry.snapshot(&self.drains),
            Audience::Users(_) => {
                let members = entry.members().values();
                filtered = self.drains.split(members.filter(|m| audience.includes(m)));
                &filtered
            }
        };
        let out = Fanout {
            queued: shares.iter().map(|s| s.len()).sum(),
            slow: 0,
        };
        // Under the shard's read lock, so that a join sees the fan-out either handed
        // over with its snapshot or not at all (see `Group`).
        self.drains.write(shares, frame, now, entry.pending());
        out
    }

    /// [`Hub::deliver`] to a small group with nothing pending in the drains: a small
    /// group's frame goes straight into each idle socket (there is little for a drain to
    /// gather, and its hand-off would cost more than the write it saves), unless the
    /// group is in a burst (see [`BURST_GAP`]).
    fn deliver_small(
        &self,
        entry: &Group,
        frame: &Bytes,
        now: Instant,
        audience: Audience<'_>,
    ) -> Fanout {
        let since = now.saturating_duration_since(self.started);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        let inline = !entry.in_burst(nanos, BURST_GAP);
        let mut out = Fanout::default();
        let mut scheduled = Vec::new();
        let mut written = 0;
        for member in entry.members().values().filter(|m| audience.includes(m)) {
            let delivery = if inline {
                member.try_write_at(frame, now)
            } else {
                member.try_deliver_at(frame, now)
            };
            match delivery {
                Delivery::Scheduled => {
                    out.queued += 1;
                    scheduled.push(member.clone());
                }
                Delivery::Written => {
                    out.queued += 1;
                    written += 1;
                }
                Delivery::Queued => out.queued += 1,
                Delivery::Slow => out.slow += 1,
                Delivery::Gone => {}
            }
        }
        self.drains.record(written, now);
        self.drains.schedule(scheduled);
        out
    }

    /// Runs `then` once every fan-out handed to the drains so far has been written to
    /// (or queued on) its members; at once when none is pending. Whatever must reach a
    /// member after the notifications already published (a close, a `subscribed` frame
    /// carrying the group's position) goes through here.
    pub fn after_deliveries(&self, then: impl FnOnce() + Send + 'static) {
        self.drains.after(then);
    }

    /// Resolves once every fan-out handed to the drains so far has been written to (or
    /// queued on) its members (see [`Hub::after_deliveries`]).
    pub async fn delivered(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.after_deliveries(move || {
            let _ = done.send(());
        });
        // The sender is dropped only after sending (or if the runtime shuts down).
        let _ = wait.await;
    }

    /// Removes every local member of `group` (forgetting the group) and closes each
    /// connection with `close` after the notifications already published to it.
    /// Returns how many connections are closed.
    pub fn close_group(&self, group: &GroupName, close: &Close) -> usize {
        let mut shard = self.groups.write(group);
        let removed = shard.remove(group);
        if let Some(entry) = &removed {
            self.retire(group, entry);
        }
        drop(shard);
        let members = removed.map(Group::into_members).unwrap_or_default();
        self.close_all(members, close)
    }

    /// Closes every local connection of `user` (all groups, all tabs) with `close` after
    /// the notifications already published to it. Returns how many connections are closed.
    pub fn close_user(&self, user: &UserId, close: &Close) -> usize {
        let removed = self.users.write(user).remove(user).unwrap_or_default();
        self.close_all(removed, close)
    }

    fn close_all(&self, members: Members, close: &Close) -> usize {
        let closed = members.len();
        if closed > 0 {
            let close = close.clone();
            self.drains.after(move || {
                for member in members.values() {
                    member.close_after_queued(close.clone());
                }
            });
        }
        closed
    }

    /// Local members of `group`.
    pub fn subscribers(&self, group: &GroupName) -> usize {
        self.groups
            .read(group)
            .get(group)
            .map_or(0, |g| g.members().len())
    }

    /// Groups with local members and the memberships in them (for the metrics scrape;
    /// one shard lock at a time, so the two numbers are not one atomic snapshot).
    pub fn counts(&self) -> (usize, usize) {
        self.groups.each().fold((0, 0), |(groups, members), shard| {
            let here: usize = shard.values().map(|g| g.members().len()).sum();
            (groups + shard.len(), members + here)
        })
    }

    /// Up to `limit` distinct users with a local connection in `group`, sorted.
    pub fn group_users(&self, group: &GroupName, limit: usize) -> Vec<UserId> {
        let shard = self.groups.read(group);
        let members = shard
            .get(group)
            .into_iter()
            .flat_map(|g| g.members().values());
        let users: BTreeSet<&UserId> = members.filter_map(Member::user).collect();
        users.into_iter().take(limit).cloned().collect()
    }

    /// Every group with local members, its member count and up to `users_limit` of its
    /// distinct users (what a node tells the others, for cluster-wide counts).
    pub fn snapshot(&self, users_limit: usize) -> Vec<(GroupName, usize, Vec<UserId>)> {
        let mut all = Vec::new();
        for shard in self.groups.each() {
            for (name, entry) in shard.iter() {
                let users: BTreeSet<&UserId> =
                    entry.members().values().filter_map(Member::user).collect();
                let users = users.into_iter().take(users_limit).cloned().collect();
                all.push((name.clone(), entry.members().len(), users));
            }
        }
        all
    }

    /// Up to `limit` groups with local members, sorted by name, with their member counts,
    /// and the total number of such groups.
    pub fn groups(&self, limit: usize) -> (Vec<(GroupName, usize)>, usize) {
        let mut all: Vec<(GroupName, usize)> = Vec::new();
        for shard in self.groups.each() {
            all.extend(shard.iter().map(|(g, e)| (g.clone(), e.members().len())));
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod drain_tests;
