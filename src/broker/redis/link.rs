//! One connection to Redis, standalone or Cluster, in RESP3 so that pub/sub messages
//! arrive as push messages on an ordinary multiplexed connection.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, ProtocolVersion, PushInfo, RedisResult,
    Value,
};

/// How long connecting may take before herald treats Redis as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may take. Generous: a busy node (a large fan-out on the same
/// cores) must not mistake its own slowness for Redis being down.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is: one server, or the seed nodes of a Cluster.
#[derive(Debug, Clone)]
pub struct Target {
    urls: Vec<String>,
    cluster: bool,
}

impl Target {
    /// `urls` are comma-separated in `--redis-url`; more than one only makes sense with
    /// `cluster` (seed nodes).
    pub fn new(urls: Vec<String>, cluster: bool) -> Self {
        Self { urls, cluster }
    }

    /// Whether this is a Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Opens a connection. Push messages (pub/sub deliveries, subscription confirmations,
    /// and a `Disconnection` when the link breaks) go to `on_push`, in order, on the
    /// connection's reader: it must not block.
    pub async fn open(
        &self,
        on_push: Option<Arc<dyn Fn(PushInfo) + Send + Sync>>,
    ) -> RedisResult<Link> {
        if self.cluster {
            let mut builder = ClusterClientBuilder::new(self.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(1);
            if let Some(push) = on_push {
                builder = builder.push_sender(move |info| {
                    push(info);
                    Ok::<(), std::convert::Infallible>(())
                });
            }
            let conn = builder.build()?.get_async_connection().await?;
            return Ok(Link::Cluster(conn));
        }
        let url = self.urls.first().map(String::as_str).unwrap_or_default();
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let mut config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        if let Some(push) = on_push {
            config = config.set_push_sender(move |info| {
                push(info);
                Ok::<(), std::convert::Infallible>(())
            });
        }
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Link::Single(conn))
    }
}

/// A live connection. Cheap to clone: clones share the socket, and concurrent commands
/// are pipelined on it, so many publishes in flight never wait for each other's round
/// trips.
#[derive(Clone)]
pub enum Link {
    /// A standalone server.
    Single(MultiplexedConnection),
    /// A Redis Cluster (routes each command by its keys' hash slot).
    Cluster(ClusterConnection),
}

impl Link {
    /// Runs one command.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let value = match self.clone() {
            Self::Single(mut c) => c.req_packed_command(cmd).await?,
            Self::Cluster(mut c) => c.req_packed_command(cmd).await?,
        };
        Ok(redis::from_redis_value(value)?)
    }

    /// Runs several commands in one round trip; their replies as one array.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> RedisResult<Value> {
        match self.clone() {
            Self::Single(mut c) => pipe.query_async(&mut c).await,
            Self::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }

    /// Runs a Lua script (EVALSHA, loading it on first use).
    pub async fn invoke(&self, invocation: &redis::ScriptInvocation<'_>) -> RedisResult<Value> {
        match self.clone() {
            Self::Single(mut c) => invocation.invoke_async(&mut c).await,
            Self::Cluster(mut c) => invocation.invoke_async(&mut c).await,
        }
    }

    /// Starts receiving `channel` (sharded pub/sub on a Cluster); returns once Redis
    /// confirmed it.
    pub async fn subscribe(&self, channel: &str) -> RedisResult<()> {
        match self.clone() {
            Self::Single(mut c) => c.subscribe(channel).await,
            Self::Cluster(mut c) => c.ssubscribe(channel).await,
        }
    }

    /// Stops receiving `channel`; returns once Redis confirmed it.
    pub async fn unsubscribe(&self, channel: &str) -> RedisResult<()> {
        match self.clone() {
            Self::Single(mut c) => c.unsubscribe(channel).await,
            Self::Cluster(mut c) => c.sunsubscribe(channel).await,
        }
    }
}
