//! The node: the hub (local membership) and the broker (everything shared), joined by
//! one rule: the node watches a group in the broker exactly while it has local members
//! (centrifuge's `addSubscription` / `removeSubscription`).

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;

use crate::broker::history::{self, HistorySettings, Recovery};
use crate::broker::{
    Broker, BrokerError, Local, MemoryBroker, PublishNow, Published, RedisBroker, RedisSettings,
};
use crate::hub::{ConnId, Hub, Joined, Member};
use crate::metrics::Metrics;
use crate::protocol::{Epoch, GroupName, Offset, Position, Publication};

/// One herald node's membership and publishing, over whichever broker it runs.
pub struct Node {
    /// The local side every broker delivers through.
    pub local: Arc<Local>,
    /// Offsets and delivery between nodes.
    pub broker: Arc<dyn Broker>,
    metrics: Arc<Metrics>,
}

impl Node {
    /// A single node on the embedded [`MemoryBroker`], keeping `history`.
    pub fn memory(hub: Arc<Hub>, metrics: Arc<Metrics>, history: HistorySettings) -> Self {
        let local = Arc::new(Local::new(hub, metrics.clone()));
        let broker = MemoryBroker::new(local.clone(), history);
        Self::new(local, broker, metrics)
    }

    /// A node sharing groups with other nodes through Redis.
    pub fn redis(hub: Arc<Hub>, metrics: Arc<Metrics>, settings: RedisSettings) -> Self {
        let local = Arc::new(Local::new(hub, metrics.clone()));
        let broker = Arc::new(RedisBroker::start(settings, local.clone(), metrics.clone()));
        Self::new(local, broker, metrics)
    }

    /// A node delivering through `local`, on `broker`.
    pub fn new(local: Arc<Local>, broker: Arc<dyn Broker>, metrics: Arc<Metrics>) -> Self {
        Self {
            local,
            broker,
            metrics,
        }
    }

    /// Adds `member` to `group` and returns the group's position at that moment: the
    /// member receives exactly the publications after it. The group's first local member
    /// makes the node watch the group; if that fails the member is not added.
    pub async fn join(&self, group: &GroupName, member: Member) -> Result<Position, BrokerError> {
        let _watch = self.local.watch_lock(group).await;
        let hub = self.local.hub();
        let id = member.id();
        if let Joined::At(offset) = hub.join(group, member) {
            return Ok(offset);
        }
        // Watch first, then read the offset: whatever is published after the read is
        // then sure to arrive, and what arrives in between is sorted out by the hub.
        let synced = async {
            self.broker.watch(group).await?;
            self.broker.position(group).await
        };
        match synced.await {
            Ok(position) => Ok(hub.synced(group, position)),
            Err(e) => {
                if hub.leave(group, id) {
                    let _ = self.broker.unwatch(group).await;
                }
                Err(e)
            }
        }
    }

    /// Joins `member` to `group` like [`Node::join`], then finds what it missed after
    /// `since` in `epoch`: the seam is exact because live delivery starts first (it
    /// queues behind the member's unwritten frames), history is read after, and only
    /// what precedes the join position is taken from it.
    pub async fn resume(
        &self,
        group: &GroupName,
        member: Member,
        since: Offset,
        epoch: Option<&Epoch>,
    ) -> Result<(Position, Recovery), BrokerError> {
        let joined = self.join(group, member).await?;
        let recovery = match history::precheck(&joined, since, epoch) {
            Some(settled) => settled,
            None => {
                let missed = usize::try_from(joined.offset - since).unwrap_or(usize::MAX);
                match self.broker.history(group, since, missed).await {
                    Ok(read) => history::replay(&joined, since, read),
                    Err(e) => {
                        tracing::warn!(%group, error = %e, "history read failed; resume not recovered");
                        Recovery::Unavailable
                    }
                }
            }
        };
        self.metrics.recovery(recovery.outcome());
        Ok((joined, recovery))
    }

    /// Removes connection `id` from `group`; the last local member makes the node stop
    /// watching it.
    pub async fn leave(&self, group: &GroupName, id: ConnId) -> Result<(), BrokerError> {
        let _watch = self.local.watch_lock(group).await;
        if self.local.hub().leave(group, id) {
            self.broker.unwatch(group).await?;
        }
        Ok(())
    }

    /// Publishes through the broker and counts broker failures: the one publish path for
    /// `POST /notify` and client publish. Fan-out is recorded by local delivery, on every
    /// node.
    ///
    /// A broker that publishes at once (memory) does so when this is called, and the
    /// future only hands over the result: no future holding the publication is made
    /// (callers await it at once).
    pub fn publish(
        &self,
        publication: Publication,
    ) -> impl Future<Output = Result<Published, BrokerError>> + '_ {
        match self.publish_now(publication) {
            PublishNow::Done(published) => Either::Left(std::future::ready(published)),
            PublishNow::Wait(publication) => Either::Right(self.publish_waiting(publication)),
        }
    }

    /// [`Node::publish`] as far as it goes without waiting: `Done` when the broker
    /// published at once (a failure counted), else `Wait` with the publication, for
    /// [`Node::publish_waiting`].
    pub fn publish_now(&self, publication: Publication) -> PublishNow {
        match self.broker.publish_now(publication) {
            PublishNow::Done(published) => PublishNow::Done(
                published.inspect_err(|_| self.metrics.broker_publish_errors.inc()),
            ),
            wait @ PublishNow::Wait(_) => wait,
        }
    }

    /// Publishes what [`Node::publish_now`] gave back, waiting for the broker.
    pub async fn publish_waiting(
        &self,
        publication: Publication,
    ) -> Result<Published, BrokerError> {
        let published = self.broker.publish(publication).await;
        published.inspect_err(|_| self.metrics.broker_publish_errors.inc())
    }
}
