//! The embedded single-node broker: offsets in memory, delivery straight into the hub.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::{Broker, BrokerError, Published};
use crate::hub::{Audience, ConnId, Hub, Member};
use crate::protocol::{encode_notify, EventName, GroupName, Offset, UserId};

const SHARDS: usize = 64;

/// One group's position. Its mutex is held while a publication is delivered, which is
/// what keeps offsets in order on every connection and lets a subscriber join between
/// two publications, never during one.
type GroupLog = Arc<Mutex<Offset>>;

/// Broker for one node. Keeps each group's offset for the life of the process
/// (about 100 bytes per group name ever used).
#[derive(Debug)]
pub struct MemoryBroker {
    hub: Arc<Hub>,
    logs: Box<[Mutex<HashMap<GroupName, GroupLog>>]>,
    hasher: RandomState,
}

impl MemoryBroker {
    /// A broker delivering into `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        let logs = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Self {
            hub,
            logs,
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, group: &GroupName) -> MutexGuard<'_, HashMap<GroupName, GroupLog>> {
        let i = self.hasher.hash_one(group) as usize % SHARDS;
        // Poisoning cannot leave a HashMap of Arcs inconsistent: keep serving.
        self.logs[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self, group: &GroupName) -> GroupLog {
        self.shard(group).entry(group.clone()).or_default().clone()
    }
}

fn lock(log: &GroupLog) -> MutexGuard<'_, Offset> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn publish(
        &self,
        group: &GroupName,
        event: &EventName,
        data: &RawValue,
        audience: Audience<'_>,
    ) -> Result<Published, BrokerError> {
        let log = self.log(group);
        let mut offset = lock(&log);
        *offset += 1;
        let frame = encode_notify(group, event, *offset, data);
        let fanout = self.hub.deliver(group, &frame, audience);
        Ok(Published {
            offset: *offset,
            fanout,
        })
    }

    async fn subscribe(&self, group: &GroupName, member: Member) -> Result<Offset, BrokerError> {
        let log = self.log(group);
        let offset = lock(&log);
        self.hub.join(group, member);
        Ok(*offset)
    }

    async fn unsubscribe(&self, group: &GroupName, id: ConnId) -> Result<(), BrokerError> {
        self.hub.leave(group, id);
        Ok(())
    }

    async fn close_group(
        &self,
        group: &GroupName,
        frame: CloseFrame,
    ) -> Result<usize, BrokerError> {
        Ok(self.hub.close_group(group, &frame))
    }

    /// Local only: one node holds every connection. A Redis broker fans this out.
    async fn close_user(&self, user: &UserId, frame: CloseFrame) -> Result<usize, BrokerError> {
        Ok(self.hub.close_user(user, &frame))
    }

    async fn offset(&self, group: &GroupName) -> Result<Offset, BrokerError> {
        let log = self.shard(group).get(group).cloned();
        Ok(log.map_or(0, |l| *lock(&l)))
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn g(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn offsets_start_at_one_per_group_and_subscribers_see_only_later_ones() {
        let broker = MemoryBroker::new(Arc::new(Hub::new()));
        let ev = EventName::default_event();
        let data = RawValue::from_string("1".into()).unwrap();
        let publish = |group: &'static str| {
            let (ev, data) = (&ev, &data);
            let broker = &broker;
            async move {
                let group = g(group);
                let published = broker.publish(&group, ev, data, Audience::Everyone);
                published.await.unwrap().offset
            }
        };
        assert_eq!(broker.offset(&g("a")).await.unwrap(), 0);
        assert_eq!(publish("a").await, 1);
        assert_eq!(publish("a").await, 2);
        assert_eq!(publish("b").await, 1);

        let member = Member::new(7, 4, CancellationToken::new());
        assert_eq!(broker.subscribe(&g("a"), member.clone()).await.unwrap(), 2);
        let p = broker
            .publish(&g("a"), &ev, &data, Audience::Everyone)
            .await
            .unwrap();
        assert_eq!((p.offset, p.fanout.queued), (3, 1));
        let got = member.take();
        assert_eq!(got.len(), 1);
        let Some(crate::hub::Outbound::Frame(bytes)) = got.front() else {
            panic!("{got:?}")
        };
        assert!(String::from_utf8_lossy(bytes).contains(r#""offset":3"#));
    }
}
