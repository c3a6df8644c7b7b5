//! A Redis connection that keeps itself up: reconnects with backoff and jitter when it
//! breaks, and runs a hook (re-subscribe) every time it is up again.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::{PushInfo, PushKind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::link::{Link, Target};
use crate::broker::BrokerError;
use crate::metrics::Metrics;

/// First wait before reconnecting; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an idle link is pinged, so a silently dead one is noticed.
const HEALTH_CHECK: Duration = Duration::from_secs(1);
/// Unanswered health checks in a row after which the link counts as dead.
const SLOW_PINGS: u32 = 2;

/// What a connection does with the pub/sub messages it receives.
pub type OnMessage = Arc<dyn Fn(PushKind, &[redis::Value]) + Send + Sync>;

/// Runs after every (re)connect, before the link counts as up.
pub type OnConnect =
    Arc<dyn Fn(Link) -> Pin<Box<dyn Future<Output = redis::RedisResult<()>> + Send>> + Send + Sync>;

/// One self-healing connection.
pub struct Supervised {
    link: RwLock<Option<Link>>,
    up: AtomicBool,
    broken: Notify,
    /// Which connection is current: a late disconnection report from an older one is
    /// ignored.
    generation: AtomicU64,
}

impl Supervised {
    /// Starts connecting to `target` in the background until `stop` is cancelled.
    pub fn start(
        target: Target,
        on_message: Option<OnMessage>,
        on_connect: Option<OnConnect>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            link: RwLock::new(None),
            up: AtomicBool::new(false),
            broken: Notify::new(),
            generation: AtomicU64::new(0),
        });
        let me = this.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = me.supervise(target, on_message, on_connect, metrics) => {}
                () = stop.cancelled() => {}
            }
            me.set(None);
        });
        this
    }

    /// The live link, or `Unavailable` while reconnecting.
    pub fn get(&self) -> Result<Link, BrokerError> {
        self.link
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| BrokerError::Unavailable("redis is not connected".into()))
    }

    /// Whether the link is connected and its hook has run.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Reports a failure seen by a caller; the supervisor reconnects when it means the
    /// connection is gone (a slow reply alone does not: the health check decides).
    pub fn report(&self, error: &redis::RedisError) {
        if error.is_unrecoverable_error() || error.is_connection_dropped() {
            self.broken.notify_one();
        }
    }

    fn set(&self, link: Option<Link>) {
        *self.link.write().unwrap_or_else(|p| p.into_inner()) = link;
    }

    async fn supervise(
        self: &Arc<Self>,
        target: Target,
        on_message: Option<OnMessage>,
        on_connect: Option<OnConnect>,
        metrics: Arc<Metrics>,
    ) {
        let mut backoff = MIN_BACKOFF;
        let mut connected_before = false;
        loop {
            let me = Arc::downgrade(self);
            let on_message = on_message.clone();
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            let on_push = Arc::new(move |info: PushInfo| {
                if info.kind == PushKind::Disconnection {
                    let current = me
                        .upgrade()
                        .filter(|me| me.generation.load(Ordering::Acquire) == generation);
                    if let Some(me) = current {
                        me.up.store(false, Ordering::Release);
                        me.broken.notify_one();
                    }
                } else if let Some(handler) = &on_message {
                    handler(info.kind, &info.data);
                }
            });
            let connected = async {
                let link = target.open(Some(on_push)).await?;
                // Visible before the hook runs, so watches made meanwhile use it too.
                self.set(Some(link.clone()));
                if let Some(hook) = &on_connect {
                    hook(link.clone()).await?;
                }
                Ok::<_, redis::RedisError>(link)
            }
            .await;
            let link = match connected {
                Ok(link) => link,
                Err(e) => {
                    self.set(None);
                    tracing::warn!(error = %e, retry_in = ?backoff, "redis unreachable");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if connected_before {
                metrics.broker_reconnects.inc();
                tracing::info!("reconnected to redis");
            }
            connected_before = true;
            backoff = MIN_BACKOFF;
            self.up.store(true, Ordering::Release);
            // Up until a disconnection, a dropped connection or failed health checks
            // (a refused PING, or [`SLOW_PINGS`] unanswered in a row).
            let mut slow = 0;
            loop {
                tokio::select! {
                    () = self.broken.notified() => break,
                    () = tokio::time::sleep(HEALTH_CHECK) => {
                        let ping: redis::RedisResult<String> = link.query(&redis::cmd("PING")).await;
                        match ping {
                            Ok(_) => slow = 0,
                            Err(e) if e.is_timeout() && slow + 1 < SLOW_PINGS => slow += 1,
                            Err(_) => break,
                        }
                    }
                }
            }
            self.up.store(false, Ordering::Release);
            self.set(None);
            tracing::warn!("lost the redis connection; reconnecting");
            tokio::time::sleep(jittered(MIN_BACKOFF)).await;
        }
    }
}

/// `base` give or take half, so nodes that lost Redis together do not return in lockstep.
fn jittered(base: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let fraction = (random % 1000) as f64 / 1000.0; // 0..1
    base.mul_f64(0.5 + fraction)
}
