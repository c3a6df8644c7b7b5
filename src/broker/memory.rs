//! The embedded single-node broker: offsets in memory, delivery straight into the hub.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Broker, BrokerError, GroupCount, Local, Published};
use crate::protocol::{Close, GroupName, Offset, Publication, UserId};

const SHARDS: usize = 64;

/// One group's position. Its mutex is held while a publication is delivered, which is
/// what keeps offsets in order on every connection.
type GroupLog = Arc<Mutex<Offset>>;

/// Broker for one node.
///
/// A group gets an entry here only when it is first notified, and keeps it for the life
/// of the process so its offsets keep growing (about 100 bytes per notified group name:
/// the name, the map slot and the shared counter). Groups that are only joined and left
/// leave nothing behind.
#[derive(Debug)]
pub struct MemoryBroker {
    local: Arc<Local>,
    logs: Box<[Mutex<HashMap<GroupName, GroupLog>>]>,
    hasher: RandomState,
}

impl MemoryBroker {
    /// A broker delivering through `local`.
    pub fn new(local: Arc<Local>) -> Self {
        let logs = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            local,
            logs,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, group: &GroupName) -> MutexGuard<'_, HashMap<GroupName, GroupLog>> {
        let i = self.hasher.hash_one(group) as usize % SHARDS;
        // Poisoning cannot leave a HashMap of Arcs inconsistent: keep serving.
        self.logs[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Group names with an offset (notified at least once).
    pub fn notified_groups(&self) -> usize {
        (0..SHARDS)
            .map(|i| self.logs[i].lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

fn lock(log: &GroupLog) -> MutexGuard<'_, Offset> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(&self, mut publication: Publication) -> Result<Published, BrokerError> {
        let log = self
            .shard(&publication.group)
            .entry(publication.group.clone())
            .or_default()
            .clone();
        let mut offset = lock(&log);
        *offset += 1;
        publication.offset = *offset;
        let fanout = self.local.deliver(&publication);
        Ok(Published {
            offset: *offset,
            recipients: fanout.queued,
        })
    }

    /// Every publication is delivered locally anyway: nothing to start.
    async fn watch(&self, _group: &GroupName) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unwatch(&self, _group: &GroupName) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Waits for a publication being delivered to finish, so a joining member's position
    /// is on one side of it.
    async fn offset(&self, group: &GroupName) -> Result<Offset, BrokerError> {
        let log = self.shard(group).get(group).cloned();
        Ok(log.map_or(0, |l| *lock(&l)))
    }

    async fn close_group(&self, group: &GroupName, close: Close) -> Result<usize, BrokerError> {
        Ok(self.local.close_group(group, &close))
    }

    async fn close_user(&self, user: &UserId, close: Close) -> Result<usize, BrokerError> {
        Ok(self.local.close_user(user, &close))
    }

    async fn group_count(
        &self,
        group: &GroupName,
        limit: usize,
    ) -> Result<GroupCount, BrokerError> {
        let hub = self.local.hub();
        Ok(GroupCount {
            subscribers: hub.subscribers(group),
            users: hub.group_users(group, limit),
        })
    }

    async fn groups(&self, limit: usize) -> Result<(Vec<(GroupName, usize)>, usize), BrokerError> {
        Ok(self.local.hub().groups(limit))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Hub, Member, Outbound};
    use crate::metrics::Metrics;
    use crate::node::Node;
    use crate::protocol::EventName;
    use serde_json::value::RawValue;
    use tokio_util::sync::CancellationToken;

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    fn publication(group: &str) -> Publication {
        Publication {
            group: g(group),
            event: EventName::default_event(),
            offset: 0,
            users: None,
            data: RawValue::from_string("1".into()).unwrap(),
        }
    }

    fn node() -> (Node, Arc<Hub>) {
        let hub = Arc::new(Hub::new());
        (Node::memory(hub.clone(), Arc::new(Metrics::new())), hub)
    }

    #[tokio::test]
    async fn offsets_start_at_one_per_group_and_subscribers_see_only_later_ones() {
        let (node, _) = node();
        let offset = |p: Result<Published, BrokerError>| p.unwrap().offset;
        assert_eq!(node.broker.offset(&g("a")).await.unwrap(), 0);
        assert_eq!(offset(node.publish(publication("a")).await), 1);
        assert_eq!(offset(node.publish(publication("a")).await), 2);
        assert_eq!(offset(node.publish(publication("b")).await), 1);

        let member = Member::new(7, 4, CancellationToken::new());
        assert_eq!(node.join(&g("a"), member.clone()).await.unwrap(), 2);
        let p = node.publish(publication("a")).await.unwrap();
        assert_eq!((p.offset, p.recipients), (3, 1));
        let got = member.take();
        let [Outbound::Frame(bytes)] = &got.into_iter().collect::<Vec<_>>()[..] else {
            panic!("expected one frame")
        };
        assert!(String::from_utf8_lossy(bytes).contains(r#""offset":3"#));
        let again = Member::new(8, 4, CancellationToken::new());
        assert_eq!(node.join(&g("a"), again).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn groups_only_joined_and_left_leave_no_trace() {
        let hub = Arc::new(Hub::new());
        let metrics = Arc::new(Metrics::new());
        let local = Arc::new(Local::new(hub.clone(), metrics.clone()));
        let broker = Arc::new(MemoryBroker::new(local.clone()));
        let node = Node::new(local, broker.clone(), metrics);
        node.publish(publication("room:notified")).await.unwrap();
        for i in 0..100 {
            let group = g(&format!("room:{i}"));
            let member = Member::new(i, 4, CancellationToken::new());
            node.join(&group, member).await.unwrap();
            node.leave(&group, i).await.unwrap();
        }
        assert_eq!(hub.counts(), (0, 0));
        assert_eq!(hub.group_names(), Vec::<GroupName>::new());
        assert_eq!(
            broker.notified_groups(),
            1,
            "only the notified group has an offset"
        );
    }
}
