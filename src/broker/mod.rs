//! Moves publications to every node that has members of a group, and owns each group's
//! offset (later: history and epoch).
//!
//! The broker is handed the local [`Hub`](crate::hub::Hub) and calls `hub.deliver` for
//! every publication it carries, so one node and many nodes share one delivery path
//! (centrifuge's `Broker` + `BrokerEventHandler` shape). [`MemoryBroker`] is the default
//! for a single node; a Redis broker will let several nodes share groups.

mod memory;

pub use memory::MemoryBroker;

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::hub::{Audience, ConnId, Fanout, Member};
use crate::protocol::{EventName, GroupName, Offset, UserId};

/// What one publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The offset the notification got in its group.
    pub offset: Offset,
    /// Local delivery on this node.
    pub fanout: Fanout,
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
    /// Assigns the next offset in `group` and delivers the notification to the members in
    /// `audience`, as one step per group: members see offsets in order. A notification
    /// for some users only still takes the group's next offset, so other members see a
    /// gap where it was.
    async fn publish(
        &self,
        group: &GroupName,
        event: &EventName,
        data: &RawValue,
        audience: Audience<'_>,
    ) -> Result<Published, BrokerError>;

    /// Adds `member` to `group` and returns the group's offset at that instant: the member
    /// receives exactly the notifications after it.
    async fn subscribe(&self, group: &GroupName, member: Member) -> Result<Offset, BrokerError>;

    /// Removes connection `id` from `group`.
    async fn unsubscribe(&self, group: &GroupName, id: ConnId) -> Result<(), BrokerError>;

    /// Closes every connection in `group` with `frame`; returns how many this node closed.
    async fn close_group(&self, group: &GroupName, frame: CloseFrame)
        -> Result<usize, BrokerError>;

    /// Closes every connection of `user` (all groups, all tabs) with `frame`; returns how
    /// many this node closed.
    async fn close_user(&self, user: &UserId, frame: CloseFrame) -> Result<usize, BrokerError>;

    /// The group's latest offset (0 when nothing was ever sent to it).
    async fn offset(&self, group: &GroupName) -> Result<Offset, BrokerError>;

    /// Whether the broker can serve now (`/readyz`).
    fn is_ready(&self) -> bool;
}
