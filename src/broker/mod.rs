//! Moves publications to every node that has members of a group, and owns each group's
//! offset, epoch and history ([`history`]).
//!
//! The shape is centrifuge's `Broker` + `BrokerEventHandler` (and socketioxide's adapter
//! over a local room index): the [`Hub`](crate::hub::Hub) owns local membership; the
//! node watches a group in the broker from its first local member to its last
//! ([`crate::node::Node`]); the broker assigns each publication its offset and hands it to
//! [`Local::deliver`] on every node watching the group, the publishing node included.
//! Broker signatures speak protocol types ([`Publication`], [`Close`]), never transport
//! types, so a publication can cross the network as it is.
//!
//! # What `recipients` in the `POST /notify` reply counts
//! - [`MemoryBroker`]: the members of the group on this (the only) node that the
//!   notification was handed to, after `users` targeting: its members when it was
//!   published (a large group's frames are written by the hub's drains just after the
//!   reply; a member closed meanwhile is still counted).
//! - Redis broker: the herald nodes that received the publication, that is nodes with at
//!   least one member in the group (Redis' `PUBLISH` answer). Delivery on each node
//!   happens after the reply, so members are not counted; `GET /groups/{group}` gives the
//!   cluster-wide member count.

pub mod history;
mod local;
mod memory;
pub mod redis;

pub use history::{HistoryRead, HistorySettings, Recovery};
pub use local::Local;
pub use memory::MemoryBroker;
pub use redis::{RedisBroker, RedisSettings};

use async_trait::async_trait;

use crate::protocol::{Close, GroupName, Offset, Position, Publication, UserId};

/// What one publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The offset the notification got in its group.
    pub offset: Offset,
    /// What `recipients` reports: see the module documentation for each broker.
    pub recipients: usize,
}

/// A group's members as counted by the broker (every node for a shared broker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupCount {
    /// Connections in the group.
    pub subscribers: usize,
    /// Up to the requested number of distinct users connected, sorted.
    pub users: Vec<UserId>,
}

/// History this process holds (for `/metrics`; a broker that keeps history elsewhere
/// reports none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryUsage {
    /// Notifications kept, all groups together.
    pub entries: usize,
    /// Bytes they take, as counted against `--history-max-bytes`.
    pub bytes: usize,
}

/// What [`Broker::publish_now`] did.
#[derive(Debug)]
pub enum PublishNow {
    /// Published (or failed) without waiting.
    Done(Result<Published, BrokerError>),
    /// The broker has to wait: the publication, back for [`Broker::publish`].
    Wait(Publication),
}

/// A broker could not do what was asked; the caller answers 503 or an error frame.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The backing service is unreachable.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Carries publications to every node watching a group and keeps each group's position.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Assigns the next offset (and the group's epoch) to the publication, keeps it in
    /// the group's history and hands it to [`Local::deliver`] on every node watching the
    /// group, in offset order. A notification for some users only still takes the
    /// group's next offset, so other members see a gap where it was; history keeps it with
    /// its audience. Never reports success for a publication that was not published.
    async fn publish(&self, publication: Publication) -> Result<Published, BrokerError>;

    /// [`Broker::publish`] without a future, for a broker that never waits to publish
    /// (the in-memory one): `publish`'s future is boxed, which costs an allocation per
    /// notification on the ingest path. The default hands the publication back, to go to
    /// `publish`.
    fn publish_now(&self, publication: Publication) -> PublishNow {
        PublishNow::Wait(publication)
    }

    /// Starts carrying `group`'s publications to this node; returns once every
    /// publication after the call will arrive. Called for a group's first local member.
    async fn watch(&self, group: &GroupName) -> Result<(), BrokerError>;

    /// Stops carrying `group`'s publications to this node (its last local member left).
    async fn unwatch(&self, group: &GroupName) -> Result<(), BrokerError>;

    /// The group's latest offset (0 when nothing was sent to it in its epoch) and epoch.
    async fn position(&self, group: &GroupName) -> Result<Position, BrokerError>;

    /// Up to `limit` notifications after `since` from the group's history, oldest
    /// first, with the group's position and the oldest offset kept. Keeps nothing new.
    async fn history(
        &self,
        group: &GroupName,
        since: Offset,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError>;

    /// History held in this process.
    fn history_usage(&self) -> HistoryUsage {
        HistoryUsage::default()
    }

    /// Closes every connection in `group` with `close`; returns how many were closed.
    async fn close_group(&self, group: &GroupName, close: Close) -> Result<usize, BrokerError>;

    /// Closes every connection of `user` (all groups, all tabs) with `close`; returns how
    /// many were closed.
    async fn close_user(&self, user: &UserId, close: Close) -> Result<usize, BrokerError>;

    /// Connections in `group` and up to `limit` of their distinct users.
    async fn group_count(&self, group: &GroupName, limit: usize)
        -> Result<GroupCount, BrokerError>;

    /// Up to `limit` groups with members, sorted by name, with their subscriber counts,
    /// and the total number of such groups.
    async fn groups(&self, limit: usize) -> Result<(Vec<(GroupName, usize)>, usize), BrokerError>;

    /// Whether the broker can serve now (`/readyz`).
    fn is_ready(&self) -> bool;
}
