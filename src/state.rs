//! `AppState`: the one cloneable handle every route and session gets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::broker::{Broker, BrokerError, Published};
use crate::config::Config;
use crate::hub::{ConnId, Hub};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::Publication;

/// Shared state of one herald node. Cloning copies a few `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Local groups and members.
    pub hub: Arc<Hub>,
    /// Offsets and delivery (memory by default).
    pub broker: Arc<dyn Broker>,
    /// Joining, leaving and publishing: the hub and the broker kept in step.
    pub node: Arc<Node>,
    /// This node's Prometheus metrics, in its own registry.
    pub metrics: Arc<Metrics>,
    /// Checks bearer tokens; `None` when no key is configured (auth off).
    pub verifier: Option<Arc<Verifier>>,
    /// One permit per open WebSocket (`--max-connections`); the permit lives in the
    /// session task, so a connection that ends for any reason gives it back.
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown begins; every session's close token is a child of it.
    pub shutdown: CancellationToken,
    /// Tracks session tasks, which warp's graceful shutdown does not wait for.
    pub sessions: TaskTracker,
    next_conn: Arc<AtomicU64>,
}

impl AppState {
    /// State for a node on the broker the config selects (the embedded in-memory one, or
    /// Redis with `--redis-url`), checking tokens with `verifier` (built from the same
    /// config) when there is one. Must run inside the tokio runtime: the Redis broker
    /// connects in the background.
    pub fn new(config: Config, verifier: Option<Verifier>) -> Self {
        let hub = Arc::new(Hub::new());
        let metrics = Arc::new(Metrics::new());
        let node = Arc::new(match &config.redis_url {
            None => Node::memory(hub.clone(), metrics.clone(), config.history()),
            Some(url) => Node::redis(hub.clone(), metrics.clone(), redis_settings(&config, url)),
        });
        Self {
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            config: Arc::new(config),
            hub,
            broker: node.broker.clone(),
            node,
            metrics,
            verifier: verifier.map(Arc::new),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    /// A fresh connection id, unique within this process.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes through the node: the one publish path for `POST /notify` and client
    /// publish.
    pub async fn publish(&self, publication: Publication) -> Result<Published, BrokerError> {
        self.node.publish(publication).await
    }

    /// WebSocket connections currently open.
    pub fn connections_open(&self) -> usize {
        self.config.max_connections as usize - self.connections.available_permits()
    }
}

fn redis_settings(config: &Config, url: &crate::config::Secret) -> crate::broker::RedisSettings {
    let urls = url
        .expose()
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    crate::broker::RedisSettings {
        target: crate::broker::redis::Target::new(urls, config.redis_cluster),
        prefix: config.redis_prefix.clone(),
        node_ttl: config.redis_node_ttl,
        history: config.history(),
    }
}
