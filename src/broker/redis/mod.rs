//! The Redis broker: several herald nodes behave as one hub.
//!
//! - **Publish**: one Lua script per notification does `INCR` of the group's offset,
//!   `XADD` to its history Stream and `PUBLISH` (`SPUBLISH` on a Cluster) of
//!   `<offset>|<epoch>|<publication JSON>` on the group's channel, atomically, so the
//!   channel carries offsets in order and history never disagrees with it ([`stream`]). Concurrent publishes
//!   are pipelined on one multiplexed connection: none waits for another's round trip.
//! - **Watch**: a node subscribes to a group's channel only while it has local members
//!   (from [`Node::join`](crate::node::Node::join)), on one of [`POOL`] subscriber
//!   connections chosen by the group's hash, so one busy connection does not stall every
//!   group. Each connection's messages are handed to `Local::deliver` in order, on the
//!   connection's reader.
//! - **Closes and counts** cross nodes through the control channel ([`control`]) and
//!   TTL presence entries ([`presence`]).
//! - **Expiry**: a group's offset, epoch and Stream expire together, `--history-ttl`
//!   (5 minutes without history) after its last notification ([`stream`]); the next
//!   one starts a new epoch at offset 1, which watching nodes re-base on and deliver
//!   (`Hub::deliver`), as they do after a `FLUSHALL` or a failover to an empty replica.
//! - **Redis down**: publishes fail (`503 unavailable`), `/readyz` is 503, WebSockets
//!   stay open; each connection reconnects with backoff and jitter, re-subscribes the
//!   groups the node serves and re-syncs their offsets (`Hub::resync`), so delivery
//!   resumes with no duplicates.

mod control;
mod keys;
mod link;
mod presence;
mod stream;
mod supervised;

pub use keys::Keys;
pub use link::Target;

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use redis::{PushKind, Value};
use tokio_util::sync::CancellationToken;

use super::history::{HistoryRead, HistorySettings};
use super::{Broker, BrokerError, GroupCount, Local, Published};
use crate::metrics::Metrics;
use crate::protocol::{Close, GroupName, Offset, Position, Publication, UserId};
use control::{Control, Message};
use presence::Presence;
use supervised::{OnConnect, OnMessage, Supervised};

/// Subscriber connections per node.
pub const POOL: usize = 4;

/// What the Redis broker needs from the configuration.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Server or Cluster seed nodes.
    pub target: Target,
    /// Namespace of every key and channel (`--redis-prefix`).
    pub prefix: String,
    /// How long a node's counts outlive its last heartbeat (`--redis-node-ttl`).
    pub node_ttl: Duration,
    /// What each group's Stream keeps (`--history-*`).
    pub history: HistorySettings,
}

/// What the pub/sub readers and the broker share.
struct Shared {
    keys: Keys,
    cluster: bool,
    local: Arc<Local>,
    commands: Arc<Supervised>,
    subscribers: Vec<Arc<Supervised>>,
    control: Control,
    hasher: RandomState,
    /// Reads positions and history ([`stream::READ_SCRIPT`]).
    read: redis::Script,
    /// What each group's Stream keeps, and so how long its offset and epoch live.
    history: HistorySettings,
}

/// The broker that lets several nodes share groups through Redis.
pub struct RedisBroker {
    shared: Arc<Shared>,
    presence: Arc<Presence>,
    script: redis::Script,
    history: HistorySettings,
    stop: CancellationToken,
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Shared {
    fn slot(&self, group: &GroupName) -> &Arc<Supervised> {
        &self.subscribers[self.hasher.hash_one(group) as usize % POOL]
    }

    fn publish_command(&self) -> &'static str {
        if self.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// A pub/sub message: a group's publication or a control message.
    fn on_message(self: &Arc<Self>, kind: PushKind, data: &[Value]) {
        if !matches!(kind, PushKind::Message | PushKind::SMessage) {
            return;
        }
        let [Value::BulkString(channel), Value::BulkString(payload)] = data else {
            return;
        };
        if *channel == self.keys.control().as_bytes() {
            self.on_control(payload);
        } else if self.keys.group_of(channel).is_some() {
            match stream::decode(payload) {
                Some(publication) => {
                    self.local.deliver(&publication);
                }
                None => tracing::warn!("undecodable publication on a group channel"),
            }
        }
    }

    fn on_control(self: &Arc<Self>, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("undecodable control message");
            return;
        };
        let (id, closed, emptied) = match message {
            Message::Closed { id, closed } => return self.control.answer(&id, closed),
            Message::CloseGroup { id, group, close } => {
                let closed = self.local.close_group(&group, &close);
                (id, closed, Some(group))
            }
            Message::CloseUser { id, user, close } => {
                (id, self.local.close_user(&user, &close), None)
            }
        };
        // Answer (and stop watching a group that was just emptied) off the reader.
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(group) = emptied {
                me.unwatch_if_idle(&group).await;
            }
            let answer = Message::Closed { id, closed };
            let json = serde_json::to_string(&answer).unwrap_or_default();
            if let Err(e) = me.publish_control(json).await {
                tracing::warn!(error = %e, "could not answer a close request");
            }
        });
    }

    /// Publishes on the control channel; returns how many nodes received it.
    async fn publish_control(&self, json: String) -> Result<usize, BrokerError> {
        let link = self.commands.get()?;
        let cmd = redis::cmd(self.publish_command())
            .arg(self.keys.control())
            .arg(json)
            .to_owned();
        link.query(&cmd).await.map_err(|e| {
            self.commands.report(&e);
            unavailable(e)
        })
    }

    /// Asks every node to close what `request` names (see [`Control::survey`]) and sums
    /// their answers: how `close_group` and `close_user` reach other nodes' members.
    async fn survey(&self, request: impl FnOnce(String) -> Message) -> Result<usize, BrokerError> {
        self.control
            .survey(request, async |json| self.publish_control(json).await)
            .await
    }

    async fn unwatch_if_idle(&self, group: &GroupName) {
        let _watch = self.local.watch_lock(group).await;
        if self.local.hub().subscribers(group) == 0 {
            let _ = self.unwatch(group).await;
        }
    }

    async fn unwatch(&self, group: &GroupName) -> Result<(), BrokerError> {
        let slot = self.slot(group);
        // Not connected: the subscription went with the connection, and a reconnect
        // re-subscribes only groups that still have members.
        let Ok(link) = slot.get() else {
            return Ok(());
        };
        link.unsubscribe(&self.keys.channel(group))
            .await
            .map_err(|e| {
                slot.report(&e);
                unavailable(e)
            })
    }

    /// After subscriber connection `index` (re)connected: subscribe the control channel
    /// (connection 0) and every group it serves, re-syncing each group's offset.
    async fn on_connect(self: Arc<Self>, index: usize, link: link::Link) -> redis::RedisResult<()> {
        if index == 0 {
            link.subscribe(&self.keys.control()).await?;
        }
        let hub = self.local.hub();
        for group in hub.group_names() {
            if self.hasher.hash_one(&group) as usize % POOL != index {
                continue;
            }
            let _watch = self.local.watch_lock(&group).await;
            if !hub.resync(&group) {
                continue;
            }
            link.subscribe(&self.keys.channel(&group)).await?;
            let read = stream::read_invocation(&self.read, &self.keys, &group, 0, 0, &self.history);
            let reply = link.invoke(&read).await?;
            match stream::position(&reply) {
                Ok(position) => {
                    hub.synced(&group, position);
                }
                Err(e) => tracing::warn!(%group, error = %e, "cannot re-sync the group's position"),
            }
        }
        Ok(())
    }
}

impl RedisBroker {
    /// Starts the connections (in the background: until Redis answers the broker is not
    /// ready and publishes fail with `unavailable`) and this node's presence.
    pub fn start(settings: RedisSettings, local: Arc<Local>, metrics: Arc<Metrics>) -> Self {
        let stop = CancellationToken::new();
        let keys = Keys::new(&settings.prefix);
        let target = settings.target;
        let commands = Supervised::start(target.clone(), None, None, metrics.clone(), stop.clone());
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let subscribers = (0..POOL)
                .map(|index| {
                    let on_message: OnMessage = {
                        let weak = weak.clone();
                        Arc::new(move |kind, data: &[Value]| {
                            if let Some(shared) = weak.upgrade() {
                                shared.on_message(kind, data);
                            }
                        })
                    };
                    let on_connect: OnConnect = {
                        let weak = weak.clone();
                        Arc::new(move |link| {
                            let weak = weak.clone();
                            Box::pin(async move {
                                match weak.upgrade() {
                                    Some(shared) => shared.on_connect(index, link).await,
                                    None => Ok(()),
                                }
                            })
                        })
                    };
                    Supervised::start(
                        target.clone(),
                        Some(on_message),
                        Some(on_connect),
                        metrics.clone(),
                        stop.clone(),
                    )
                })
                .collect();
            Shared {
                keys: keys.clone(),
                cluster: target.is_cluster(),
                local: local.clone(),
                commands: commands.clone(),
                subscribers,
                control: Control::default(),
                hasher: RandomState::new(),
                read: redis::Script::new(stream::READ_SCRIPT),
                history: settings.history,
            }
        });
        let node_id = uuid::Uuid::new_v4().simple().to_string();
        let presence = Presence::start(
            node_id,
            keys,
            local,
            commands,
            settings.node_ttl,
            stop.clone(),
        );
        Self {
            shared,
            presence,
            script: redis::Script::new(stream::PUBLISH_SCRIPT),
            history: settings.history,
            stop,
        }
    }

    fn commands(&self) -> Result<link::Link, BrokerError> {
        self.shared.commands.get()
    }

    fn failed(&self, e: redis::RedisError) -> BrokerError {
        self.shared.commands.report(&e);
        unavailable(e)
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, publication: Publication) -> Result<Published, BrokerError> {
        let link = self.commands()?;
        let keys = &self.shared.keys;
        let payload = serde_json::to_string(&publication)
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let invocation = stream::publish_invocation(
            &self.script,
            keys,
            self.shared.publish_command(),
            &publication,
            payload,
            &self.history,
        );
        let reply = link.invoke(&invocation).await.map_err(|e| self.failed(e))?;
        let (offset, receivers, _epoch) = stream::published(&reply)?;
        Ok(Published {
            offset,
            recipients: receivers,
        })
    }

    async fn watch(&self, group: &GroupName) -> Result<(), BrokerError> {
        let slot = self.shared.slot(group);
        let link = slot.get()?;
        link.subscribe(&self.shared.keys.channel(group))
            .await
            .map_err(|e| {
                slot.report(&e);
                unavailable(e)
            })
    }

    async fn unwatch(&self, group: &GroupName) -> Result<(), BrokerError> {
        self.shared.unwatch(group).await
    }

    async fn position(&self, group: &GroupName) -> Result<Position, BrokerError> {
        let link = self.commands()?;
        let shared = &self.shared;
        let read = stream::read_invocation(&shared.read, &shared.keys, group, 0, 0, &self.history);
        let reply = link.invoke(&read).await.map_err(|e| self.failed(e))?;
        stream::position(&reply)
    }

    async fn history(
        &self,
        group: &GroupName,
        since: Offset,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError> {
        let link = self.commands()?;
        // At least one entry is asked for, so the reply always has the Stream's parts.
        let count = limit.clamp(1, self.history.size.max(1));
        let shared = &self.shared;
        let read = stream::read_invocation(
            &shared.read,
            &shared.keys,
            group,
            since,
            count,
            &self.history,
        );
        let reply = link.invoke(&read).await.map_err(|e| self.failed(e))?;
        let mut read = stream::history(group, &reply)?;
        read.entries.truncate(limit);
        Ok(read)
    }

    async fn close_group(&self, group: &GroupName, close: Close) -> Result<usize, BrokerError> {
        self.shared
            .survey(|id| Message::CloseGroup {
                id,
                group: group.clone(),
                close,
            })
            .await
    }

    async fn close_user(&self, user: &UserId, close: Close) -> Result<usize, BrokerError> {
        self.shared
            .survey(|id| Message::CloseUser {
                id,
                user: user.clone(),
                close,
            })
            .await
    }

    async fn group_count(
        &self,
        group: &GroupName,
        limit: usize,
    ) -> Result<GroupCount, BrokerError> {
        self.presence.group(group, limit).await
    }

    async fn groups(&self, limit: usize) -> Result<(Vec<(GroupName, usize)>, usize), BrokerError> {
        self.presence.groups(limit).await
    }

    fn is_ready(&self) -> bool {
        self.shared.commands.is_up() && self.shared.subscribers.iter().all(|s| s.is_up())
    }
}
