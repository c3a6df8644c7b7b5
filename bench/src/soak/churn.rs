//! The churning half of `soak`: connections closed and reopened in turn, each on its own
//! fixed schedule (no coordinator), so the hub sees a steady stream of handshakes and
//! closes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::target::Target;
use crate::ws::{ReadOutcome, WsClient};
use crate::ConnectOpts;

/// The churning connections of one run.
pub struct Churning {
    /// What they did, added up.
    pub churn: Arc<Churn>,
    /// How many connections reopen per second.
    pub per_second: f64,
    /// Starts the schedules (the steady phase's first instant).
    begin: watch::Sender<Option<Instant>>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Churning {
    /// Opens `count` connections to `paths(j)` and waits (until `deadline`) until each
    /// opened or gave up; `per_second` of them will reopen each second once
    /// [`Churning::begin`] is called. Connection j reopens every `count / per_second`
    /// seconds, the first time `j / per_second` into the steady phase.
    pub async fn open(
        target: &Target,
        connect: &ConnectOpts,
        count: usize,
        per_second: f64,
        paths: impl Fn(usize) -> String,
        deadline: Instant,
    ) -> Self {
        let period = (per_second > 0.0 && count > 0)
            .then(|| Duration::from_secs_f64(count as f64 / per_second));
        let churn = Arc::new(Churn::default());
        let stop = CancellationToken::new();
        let (begin, begin_rx) = watch::channel(None);
        let gate = Arc::new(Semaphore::new(connect.connect_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for j in 0..count {
            let churner = Churner {
                target: target.clone(),
                path: paths(j),
                connect: connect.clone(),
                gate: gate.clone(),
                churn: churn.clone(),
                stop: stop.clone(),
            };
            let first = period.map_or(Duration::ZERO, |_| {
                Duration::from_secs_f64(j as f64 / per_second)
            });
            tasks.spawn(churner.run(first, period, begin_rx.clone()));
        }
        while churn.opened.load(Relaxed) + churn.failed.load(Relaxed) < count as u64
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(100)).await;
        }
        Self {
            churn,
            per_second,
            begin,
            stop,
            tasks,
        }
    }

    /// Starts every connection's schedule, counted from `at`.
    pub fn begin(&self, at: Instant) {
        let _ = self.begin.send(Some(at));
    }

    /// Closes every connection and waits for their tasks.
    pub async fn stop(mut self) -> Arc<Churn> {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.churn
    }
}

/// What the churning connections did, over all of them.
#[derive(Default)]
pub struct Churn {
    /// First opens that succeeded.
    pub opened: AtomicU64,
    pub reopened: AtomicU64,
    /// Opens (first or re-) that failed every retry.
    pub failed: AtomicU64,
    /// Closed by the hub (close frame or EOF) while we held them.
    pub ended_by_hub: AtomicU64,
    /// Notifications the churning connections received.
    pub frames: AtomicU64,
}

/// One churning connection's task.
struct Churner {
    target: Target,
    path: String,
    connect: ConnectOpts,
    gate: Arc<Semaphore>,
    churn: Arc<Churn>,
    stop: CancellationToken,
}

impl Churner {
    /// Opens the connection, waits for the steady phase to begin, then closes and
    /// reopens it at `begin + first`, and every `period` after that, until stopped.
    async fn run(
        self,
        first: Duration,
        period: Option<Duration>,
        mut begin: watch::Receiver<Option<Instant>>,
    ) {
        let mut frames = 0u64;
        let Some(mut ws) = self.open().await else {
            return;
        };
        self.churn.opened.fetch_add(1, Relaxed);
        let started = async {
            match begin.wait_for(Option::is_some).await {
                Ok(at) => *at,
                Err(_) => None,
            }
        };
        let mut next = match self.hold(&mut ws, &mut frames, started).await {
            Held::Until(Some(at)) => at + first,
            _ => return self.finish(Some(ws), frames).await,
        };
        loop {
            let wake = period.map(|_| next);
            let until = async move {
                match wake {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            match self.hold(&mut ws, &mut frames, until).await {
                Held::Stopped => return self.finish(Some(ws), frames).await,
                Held::Until(()) => {
                    ws.close().await;
                }
                Held::EndedByHub => {
                    self.churn.ended_by_hub.fetch_add(1, Relaxed);
                }
            }
            // Reopen; after a failure the connection is gone for the rest of the run.
            match self.open().await {
                Some(fresh) => {
                    self.churn.reopened.fetch_add(1, Relaxed);
                    ws = fresh;
                }
                None => return self.finish(None, frames).await,
            }
            if let Some(period) = period {
                next += period;
            }
        }
    }

    /// Reads (answering pings, counting notifications) until `until` resolves, the run
    /// stops or the hub ends the connection.
    async fn hold<T>(
        &self,
        ws: &mut WsClient,
        frames: &mut u64,
        until: impl std::future::Future<Output = T>,
    ) -> Held<T> {
        tokio::pin!(until);
        loop {
            tokio::select! {
                read = ws.read_batch(|_, _| *frames += 1) => match read {
                    Ok(ReadOutcome::Data) => {}
                    Ok(ReadOutcome::Closed(_) | ReadOutcome::Eof) | Err(_) => {
                        return Held::EndedByHub
                    }
                },
                value = &mut until => return Held::Until(value),
                () = self.stop.cancelled() => return Held::Stopped,
            }
        }
    }

    async fn open(&self) -> Option<WsClient> {
        let mut attempt = 0;
        loop {
            let result = {
                let _permit = self.gate.acquire().await.ok()?;
                WsClient::connect(
                    self.target.addr,
                    &self.target.host,
                    &self.path,
                    self.connect.read_buffer,
                    Duration::from_secs(10),
                )
                .await
            };
            match result {
                Ok(ws) => return Some(ws),
                Err(e) if attempt >= self.connect.connect_retries || self.stop.is_cancelled() => {
                    if self.churn.failed.fetch_add(1, Relaxed) == 0 {
                        eprintln!("churning connection failed to open: {e}");
                    }
                    return None;
                }
                Err(_) => {
                    attempt += 1;
                    sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
            }
        }
    }

    async fn finish(&self, ws: Option<WsClient>, frames: u64) {
        self.churn.frames.fetch_add(frames, Relaxed);
        if let Some(ws) = ws {
            ws.close().await;
        }
    }
}

/// How holding a connection ended.
enum Held<T> {
    Until(T),
    Stopped,
    EndedByHub,
}
