//! `AppState`: the one cloneable handle every route and session gets.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::broker::{Broker, BrokerError, PublishNow, Published};
use crate::config::Config;
use crate::hub::{ConnId, Hub};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::Publication;

/// The handle to one herald node's shared state that every route and session holds.
///
/// One `Arc`: cloning it (once per request by the warp filters, once per session) is a
/// single reference-count increment, not one per field. Fields are read through `Deref`
/// (`state.hub`, `state.config`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What an [`AppState`] points to.
pub struct Shared {
    /// Effective configuration.
    pub config: Config,
    /// Local groups and members; the node's local delivery holds it too.
    pub hub: Arc<Hub>,
    /// Offsets and delivery (memory by default).
    pub broker: Arc<dyn Broker>,
    /// Joining, leaving and publishing: the hub and the broker kept in step.
    pub node: Arc<Node>,
    /// This node's Prometheus metrics, in its own registry (shared with the broker's
    /// local delivery, which records fan-out).
    pub metrics: Arc<Metrics>,
    /// Checks bearer tokens; `None` when no key is configured (auth off).
    pub verifier: Option<Verifier>,
    /// One permit per open WebSocket (`--max-connections`); the permit lives in the
    /// session task, so a connection that ends for any reason gives it back. (An `Arc`
    /// because owned permits need one.)
    pub connections: Arc<Semaphore>,
    /// Cancelled when shutdown begins; every session's close token is a child of it.
    pub shutdown: CancellationToken,
    /// Tracks session tasks, which warp's graceful shutdown does not wait for.
    pub sessions: TaskTracker,
    next_conn: AtomicU64,
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State for a node on the broker the config selects (the embedded in-memory one, or
    /// Redis with `--redis-url`), checking tokens with `verifier` (built from the same
    /// config) when there is one. Must run inside the tokio runtime: the Redis broker
    /// connects in the background.
    pub fn new(config: Config, verifier: Option<Verifier>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::with_metrics(Some(metrics.clone())));
        let node = Arc::new(match &config.redis_url {
            None => Node::memory(hub.clone(), metrics.clone(), config.history()),
            Some(url) => Node::redis(hub.clone(), metrics.clone(), redis_settings(&config, url)),
        });
        Self(Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            config,
            hub,
            broker: node.broker.clone(),
            node,
            metrics,
            verifier,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            next_conn: AtomicU64::new(1),
        }))
    }

    /// A fresh connection id, unique within this process.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes through the node: the one publish path for `POST /notify` and client
    /// publish. The node's future as it is, not inside another that would hold (and
    /// copy) the publication again.
    pub fn publish(
        &self,
        publication: Publication,
    ) -> impl Future<Output = Result<Published, BrokerError>> + '_ {
        self.node.publish(publication)
    }

    /// [`AppState::publish`] as far as it goes without waiting (see [`Node::publish_now`]).
    pub fn publish_now(&self, publication: Publication) -> PublishNow {
        self.node.publish_now(publication)
    }

    /// Publishes what [`AppState::publish_now`] gave back, waiting for the broker.
    pub async fn publish_waiting(
        &self,
        publication: Publication,
    ) -> Result<Published, BrokerError> {
        self.node.publish_waiting(publication).await
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
