//! This node as every broker sees it: the one local-delivery path and the per-group
//! locks that keep joining, leaving and watching a group in order.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use crate::hub::{Audience, Fanout, Hub};
use crate::metrics::Metrics;
use std::collections::HashSet;

use bytes::Bytes;

use crate::protocol::{encode_notify, Close, GroupName, Publication, UserId};

/// Locks in the table that serialises watch changes. A fixed table (centrifuge's
/// `subLocks`) costs nothing per group, so idle group names leave no trace; two groups
/// that share a lock only wait for each other's (rare) first join or last leave.
const WATCH_LOCKS: usize = 1024;

/// The local side of every broker. Brokers hand each publication to
/// [`Local::deliver`] on every node, the publishing node included, so one node and many
/// share one delivery path.
#[derive(Debug)]
pub struct Local {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    watch_locks: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl Local {
    /// The local side of a node delivering into `hub`, recording into `metrics`.
    pub fn new(hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        Self {
            hub,
            metrics,
            watch_locks: (0..WATCH_LOCKS).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The node's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Encodes the client frame once and queues it on every local member of the group in
    /// the publication's audience; records the fan-out and slow consumers.
    pub fn deliver(&self, publication: &Publication) -> Fanout {
        let frame = Self::encode(publication);
        self.deliver_encoded(publication, &frame, publication.users.as_ref())
    }

    /// The notify frame of a publication (offset and epoch assigned), encoded once for
    /// every member and for history.
    pub fn encode(publication: &Publication) -> Bytes {
        let p = publication;
        encode_notify(&p.group, &p.event, p.offset, &p.epoch, &p.data)
    }

    /// [`Local::deliver`] of a publication already encoded as `frame`, for `users` only
    /// when given (a broker that keeps the audience itself passes it here).
    pub fn deliver_encoded(
        &self,
        publication: &Publication,
        frame: &Bytes,
        users: Option<&HashSet<UserId>>,
    ) -> Fanout {
        let audience = users.map_or(Audience::Everyone, Audience::Users);
        let p = publication;
        let fanout = self
            .hub
            .deliver(&p.group, p.offset, &p.epoch, frame, audience);
        self.metrics.published(fanout.queued, fanout.slow);
        fanout
    }

    /// Closes this node's members of `group`; returns how many.
    pub fn close_group(&self, group: &GroupName, close: &Close) -> usize {
        self.hub.close_group(group, close)
    }

    /// Closes this node's connections of `user`; returns how many.
    pub fn close_user(&self, user: &UserId, close: &Close) -> usize {
        self.hub.close_user(user, close)
    }

    /// Held while the node changes whether it watches `group` (first join, last leave,
    /// a re-watch after a reconnect), so those steps never interleave for one group.
    pub async fn watch_lock(&self, group: &GroupName) -> MutexGuard<'_, ()> {
        let i = self.hasher.hash_one(group) as usize % WATCH_LOCKS;
        self.watch_locks[i].lock().await
    }
}
