//! `AppState`: the one cloneable handle every route and session gets.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Verifier;
use crate::broker::{Broker, BrokerError, MemoryBroker, Published};
use crate::config::Config;
use crate::hub::{Audience, ConnId, Hub};
use crate::metrics::Metrics;
use crate::protocol::{EventName, GroupName};

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
    /// Local groups and members; the broker holds it too, to deliver.
    pub hub: Arc<Hub>,
    /// Offsets and delivery (memory by default).
    pub broker: Arc<dyn Broker>,
    /// This node's Prometheus metrics, in its own registry.
    pub metrics: Metrics,
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
    /// State for a node with the embedded in-memory broker, checking tokens with
    /// `verifier` (built from the same config) when there is one.
    pub fn new(config: Config, verifier: Option<Verifier>) -> Self {
        let hub = Arc::new(Hub::new());
        let broker = Arc::new(MemoryBroker::new(hub.clone()));
        Self(Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            config,
            hub,
            broker,
            metrics: Metrics::new(),
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

    /// Publishes through the broker and records the outcome (fan-out size, slow-consumer
    /// drops, broker errors): the one publish path for `POST /notify` and client publish.
    pub async fn publish(
        &self,
        group: &GroupName,
        event: &EventName,
        data: &serde_json::value::RawValue,
        audience: Audience<'_>,
    ) -> Result<Published, BrokerError> {
        let published = self
            .broker
            .publish(group, event, data, audience)
            .await
            .inspect_err(|_| self.metrics.broker_publish_errors.inc())?;
        self.metrics
            .published(published.fanout.queued, published.fanout.slow);
        Ok(published)
    }

    /// WebSocket connections currently open.
    pub fn connections_open(&self) -> usize {
        self.config.max_connections as usize - self.connections.available_permits()
    }
}
