//! Cluster-wide counts: each node publishes its groups' member counts (and users) to
//! Redis with a TTL heartbeat; readers add up the live nodes. A node that dies drops out
//! when its entry expires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::supervised::Supervised;
use crate::broker::{BrokerError, GroupCount, Local};
use crate::protocol::{GroupName, UserId};

/// Users listed per group in a node's entry: the most `GET /groups/{group}` returns.
const USERS_PER_GROUP: usize = 1000;

/// How soon a failed heartbeat is retried.
const RETRY: Duration = Duration::from_millis(200);

/// One node's entry: group -> (members, users).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    groups: BTreeMap<GroupName, (usize, Vec<UserId>)>,
}

/// This node's presence in Redis and the reading of everyone's.
pub struct Presence {
    id: String,
    keys: Keys,
    local: Arc<Local>,
    commands: Arc<Supervised>,
    ttl: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl Presence {
    /// Presence for node `id`, refreshed every third of `ttl` until `stop`.
    pub fn start(
        id: String,
        keys: Keys,
        local: Arc<Local>,
        commands: Arc<Supervised>,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            id,
            keys,
            local,
            commands,
            ttl,
        });
        let me = this.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                // Retry soon after a failure (Redis not up yet), so a node is counted as
                // soon as it can be.
                let next = match me.heartbeat(&mut last).await {
                    Ok(()) => me.ttl / 3,
                    Err(e) => {
                        tracing::debug!(error = %e, "presence heartbeat failed");
                        last.clear();
                        RETRY
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(next) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
        this
    }

    /// Writes this node's entry (or only extends it when nothing changed) and its place
    /// in the live-node set, and forgets nodes whose entries expired.
    async fn heartbeat(&self, last: &mut String) -> Result<(), BrokerError> {
        let link = self.commands.get()?;
        let entry = Entry {
            groups: self
                .local
                .hub()
                .snapshot(USERS_PER_GROUP)
                .into_iter()
                .map(|(g, n, users)| (g, (n, users)))
                .collect(),
        };
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let ttl_ms = self.ttl.as_millis() as u64;
        let key = self.keys.node(&self.id);
        let cmd = if json == *last {
            redis::cmd("PEXPIRE").arg(&key).arg(ttl_ms).to_owned()
        } else {
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("PX")
                .arg(ttl_ms)
                .to_owned()
        };
        let now = now_ms();
        let nodes = self.keys.nodes();
        let mut pipe = redis::pipe();
        pipe.add_command(cmd)
            .cmd("ZADD")
            .arg(&nodes)
            .arg(now + ttl_ms)
            .arg(&self.id)
            .cmd("ZREMRANGEBYSCORE")
            .arg(&nodes)
            .arg("-inf")
            .arg(now);
        let _: redis::Value = link.pipeline(&pipe).await.map_err(unavailable)?;
        *last = json;
        Ok(())
    }

    /// Ids of the other live nodes and their entries.
    async fn others(&self) -> Result<Vec<Entry>, BrokerError> {
        let link = self.commands.get()?;
        let ids: Vec<String> = link
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.keys.nodes())
                    .arg(now_ms())
                    .arg("+inf"),
            )
            .await
            .map_err(unavailable)?;
        let keys: Vec<String> = ids
            .iter()
            .filter(|id| **id != self.id)
            .map(|id| self.keys.node(id))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<String>> = link
            .query(redis::cmd("MGET").arg(&keys))
            .await
            .map_err(unavailable)?;
        Ok(raw
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect())
    }

    /// One group's members on every node: this node's live, the others' as of their
    /// last heartbeat.
    pub async fn group(&self, group: &GroupName, limit: usize) -> Result<GroupCount, BrokerError> {
        let hub = self.local.hub();
        let mut subscribers = hub.subscribers(group);
        let mut users: BTreeSet<UserId> = hub.group_users(group, limit).into_iter().collect();
        for entry in self.others().await? {
            if let Some((n, theirs)) = entry.groups.get(group) {
                subscribers += n;
                users.extend(theirs.iter().cloned());
            }
        }
        Ok(GroupCount {
            subscribers,
            users: users.into_iter().take(limit).collect(),
        })
    }

    /// Groups with members on any node, sorted, up to `limit`, and how many there are.
    pub async fn groups(
        &self,
        limit: usize,
    ) -> Result<(Vec<(GroupName, usize)>, usize), BrokerError> {
        let mut all: BTreeMap<GroupName, usize> = BTreeMap::new();
        for (group, n, _) in self.local.hub().snapshot(0) {
            *all.entry(group).or_default() += n;
        }
        for entry in self.others().await? {
            for (group, (n, _)) in entry.groups {
                *all.entry(group).or_default() += n;
            }
        }
        let total = all.len();
        Ok((all.into_iter().take(limit).collect(), total))
    }
}
