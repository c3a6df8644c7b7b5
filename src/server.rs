//! Binding the listener and running herald until a shutdown signal, then draining.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::auth::{KeyError, Verifier};
use crate::config::Config;
use crate::state::AppState;
use crate::transport;

/// Pending connections the kernel queues before herald accepts them; a reconnect storm
/// after a restart arrives in bursts of thousands.
const LISTEN_BACKLOG: i32 = 4096;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configured JWT key cannot be used.
    #[error("JWT key: {0}")]
    Key(#[from] KeyError),
    /// The listen address cannot be bound.
    #[error("cannot listen: {0}")]
    Listen(#[from] io::Error),
}

/// A bound, not yet running herald node.
pub struct Server {
    listener: TcpListener,
    /// `--metrics-listen`: a second listener serving only `/metrics`.
    metrics_listener: Option<TcpListener>,
    /// `--api-listen`: a listener for the backend API.
    api_listener: Option<TcpListener>,
    state: AppState,
}

impl Server {
    /// Loads the JWT key, if any, then binds `config.listen` and, when set,
    /// `config.metrics_listen` and `config.api_listen` (port 0 picks a free port).
    pub fn bind(config: Config) -> Result<Self, StartError> {
        let verifier = Verifier::from_config(&config)?;
        let listener = listen(config.listen)?;
        let metrics_listener = config.metrics_listen.map(listen).transpose()?;
        let api_listener = config.api_listen.map(listen).transpose()?;
        Ok(Self {
            listener,
            metrics_listener,
            api_listener,
            state: AppState::new(config, verifier),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The `--metrics-listen` address actually bound, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// The `--api-listen` address actually bound, when one is configured.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_listener.as_ref()?.local_addr().ok()
    }

    /// The node's shared state (tests inspect the hub through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` resolves, then shuts down: stop accepting, close every
    /// WebSocket with 1012 and every idle HTTP connection at once, let in-flight requests
    /// finish, and return once everything has ended or `--drain-timeout` has passed.
    pub async fn run(self, signal: impl Future<Output = ()>) {
        let Self {
            listener,
            metrics_listener,
            api_listener,
            state,
        } = self;
        let limits = state.config.http_limits();
        let http_connections = TaskTracker::new();
        let serve = |listener, routes| {
            transport::serve(
                listener,
                routes,
                limits,
                state.shutdown.clone(),
                http_connections.clone(),
                state.metrics.http_connections.clone(),
            )
        };
        let mut listeners = vec![tokio::spawn(serve(
            listener,
            transport::routes(state.clone()),
        ))];
        if let Some(l) = metrics_listener {
            listeners.push(tokio::spawn(serve(
                l,
                transport::metrics_routes(state.clone()),
            )));
        }
        if let Some(l) = api_listener {
            listeners.push(tokio::spawn(serve(l, transport::api_routes(state.clone()))));
        }

        signal.await;
        tracing::info!(
            connections = state.connections_open(),
            "shutting down: closing connections with 1012"
        );
        let deadline = tokio::time::Instant::now() + state.config.drain_timeout;
        // Notifications already published reach their members before the 1012 (the
        // drains never wait on a client, so this takes as long as their writes).
        let delivered = state.node.local.hub().delivered();
        let _ = tokio::time::timeout_at(deadline, delivered).await;
        state.shutdown.cancel();
        state.sessions.close();
        let drained = tokio::time::timeout_at(deadline, async {
            for listener in listeners {
                let _ = listener.await;
            }
            // Every accept loop has ended, so no connection task is spawned after this.
            http_connections.close();
            http_connections.wait().await;
            state.sessions.wait().await;
        })
        .await;
        match drained {
            Ok(()) => tracing::info!("shutdown complete"),
            Err(_) => tracing::warn!(
                left = state.connections_open(),
                "drain timeout passed with connections still open; exiting anyway"
            ),
        }
    }
}

/// Binds `addr` (port 0 picks a free port) with TCP_NODELAY, which accepted sockets
/// inherit: notifications are small and must not wait for Nagle.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// File descriptors herald needs besides WebSockets: the listener, HTTP API clients, logs.
const SPARE_FDS: u64 = 256;

/// Raises the open-file soft limit to the hard limit (each connection is one descriptor)
/// and warns when the connection caps still do not fit, because past the limit the
/// accept loop stalls instead of answering.
pub fn raise_fd_limit(config: &Config) {
    let listeners =
        1 + u64::from(config.api_listen.is_some()) + u64::from(config.metrics_listen.is_some());
    let needed = u64::from(config.max_connections)
        + listeners * u64::from(config.max_http_connections)
        + SPARE_FDS;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "open-file limit is below --max-connections + --max-http-connections per listener + {SPARE_FDS}; lower them or raise `ulimit -n`"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}
