//! The subscriber side: N WebSockets spread over G groups, each in its own task, each
//! recording which sequence numbers of its group it saw and how late they arrived.
//!
//! Notify `i` (its `seq`) goes to group `i % G`, so a subscriber of group `g` expects
//! exactly the accepted seqs with `seq % G == g` and keeps them in a bitset indexed by
//! `seq / G`. Per delivery the work is a byte scan for `"seq":` and `"t":`, a bit test
//! and one latency sample; shared counters and the histogram are touched once per read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use memchr::memmem::Finder;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

use crate::http::parse_u64;
use crate::latency::ShardedHistogram;
use crate::target::Target;
use crate::ws::{ConnectError, ReadOutcome, WsClient};

static SEQ_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\":"));
static T_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\":"));

/// Extracts `seq` and `t` from a notify frame without parsing the JSON.
pub fn scan_seq_t(frame: &[u8]) -> Option<(u64, u64)> {
    let s = SEQ_KEY.find(frame)? + 6;
    let (seq, used) = parse_u64(&frame[s..])?;
    let rest = &frame[s + used..];
    let t = T_KEY.find(rest)? + 4;
    let (t, _) = parse_u64(&rest[t..])?;
    Some((seq, t))
}

#[derive(Clone)]
pub struct SubConfig {
    pub target: Target,
    pub count: usize,
    pub groups: Arc<Vec<String>>,
    /// Seqs `0..notifies` may be published.
    pub notifies: u64,
    pub connect_concurrency: usize,
    pub connect_retries: u32,
    pub read_buffer: usize,
}

/// Counters every subscriber task updates (a few times per read, not per frame).
pub struct Shared {
    pub delivered: AtomicU64,
    pub last_delivery_ns: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub ended_early: AtomicU64,
    pub connected_per_group: Vec<AtomicU64>,
    pub latency: ShardedHistogram,
    pub cancel: CancellationToken,
    pub connect_errors: Mutex<BTreeMap<String, u64>>,
}

/// What one subscriber saw.
pub struct SubResult {
    pub group: usize,
    pub connected: bool,
    /// Bit `seq / G` set when `seq` arrived.
    pub seen: Vec<u64>,
    pub unique: u64,
    pub duplicates: u64,
    /// Seqs of another group or out of range.
    pub foreign: u64,
    /// Text frames without `seq`/`t`.
    pub unparsed: u64,
    /// Close code when the server closed the connection before the end of the run.
    pub ended: Option<String>,
}

impl SubResult {
    pub fn saw(&self, index: u64) -> bool {
        let (w, b) = ((index / 64) as usize, index % 64);
        self.seen.get(w).is_some_and(|word| word & (1 << b) != 0)
    }
}

/// How waiting for deliveries ended (`"complete"`, `"timeout"`, `"idle"` in results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitEnd {
    Complete,
    Timeout,
    Idle,
}

pub struct Subscribers {
    pub shared: Arc<Shared>,
    pub cfg: SubConfig,
    handles: Vec<JoinHandle<SubResult>>,
}

impl Subscribers {
    /// Spawns one task per subscriber; they connect `connect_concurrency` at a time.
    pub fn spawn(cfg: SubConfig) -> Self {
        let shared = Arc::new(Shared {
            delivered: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            ended_early: AtomicU64::new(0),
            connected_per_group: cfg.groups.iter().map(|_| AtomicU64::new(0)).collect(),
            latency: ShardedHistogram::new(64),
            cancel: CancellationToken::new(),
            connect_errors: Mutex::new(BTreeMap::new()),
        });
        let gate = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
        let handles = (0..cfg.count)
            .map(|i| {
                let shared = shared.clone();
                let gate = gate.clone();
                let cfg = cfg.clone();
                tokio::spawn(subscriber(i, cfg, shared, gate))
            })
            .collect();
        Self {
            shared,
            cfg,
            handles,
        }
    }

    pub fn connected(&self) -> u64 {
        self.shared.connected.load(Relaxed)
    }

    /// Waits until every subscriber has connected or given up, or until `deadline`;
    /// returns how many connected.
    pub async fn wait_connected(&self, deadline: Instant) -> u64 {
        let total = self.cfg.count as u64;
        let mut next_report = Instant::now() + Duration::from_secs(1);
        loop {
            let (ok, failed) = (self.connected(), self.shared.failed.load(Relaxed));
            if ok + failed >= total || Instant::now() >= deadline {
                eprintln!("connected {ok}/{total} ({failed} failed)");
                return ok;
            }
            if Instant::now() >= next_report {
                eprintln!("connecting: {ok}/{total} ({failed} failed)");
                next_report += Duration::from_secs(1);
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `expected` unique deliveries arrived, `deadline` passed, or nothing
    /// arrived for `idle` after `idle_from` (the moment the last notify was acknowledged).
    pub async fn wait_delivered(
        &self,
        expected: u64,
        deadline: Instant,
        idle: Duration,
    ) -> WaitEnd {
        let mut last = self.shared.delivered.load(Relaxed);
        let mut last_progress = Instant::now();
        let mut next_report = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            let d = self.shared.delivered.load(Relaxed);
            if d >= expected {
                return WaitEnd::Complete;
            }
            if now >= deadline {
                return WaitEnd::Timeout;
            }
            if d != last {
                last = d;
                last_progress = now;
            } else if now >= last_progress + idle {
                return WaitEnd::Idle;
            }
            if now >= next_report {
                eprintln!("delivered {d}/{expected}");
                next_report += Duration::from_secs(1);
            }
            sleep(Duration::from_millis(1)).await;
        }
    }

    /// Tells every task to close its connection and collects what each saw.
    pub async fn finish(self) -> Vec<SubResult> {
        self.shared.cancel.cancel();
        let mut results = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            match h.await {
                Ok(r) => results.push(r),
                Err(e) => eprintln!("subscriber task failed: {e}"),
            }
        }
        results
    }
}

async fn connect_with_retries(
    cfg: &SubConfig,
    shared: &Shared,
    gate: &Semaphore,
    path: &str,
) -> Result<WsClient, ConnectError> {
    let mut attempt = 0;
    loop {
        let result = {
            let _permit = gate.acquire().await.expect("the gate is never closed");
            WsClient::connect(
                cfg.target.addr,
                &cfg.target.host,
                path,
                cfg.read_buffer,
                Duration::from_secs(10),
            )
            .await
        };
        match result {
            Ok(ws) => return Ok(ws),
            Err(e) if attempt >= cfg.connect_retries => return Err(e),
            Err(_) => {
                attempt += 1;
                shared.retries.fetch_add(1, Relaxed);
                let backoff = Duration::from_millis(50 << attempt.min(5));
                sleep(backoff).await;
            }
        }
    }
}

async fn subscriber(
    index: usize,
    cfg: SubConfig,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) -> SubResult {
    let groups = cfg.groups.len() as u64;
    let group = index % cfg.groups.len();
    let per_group = cfg.notifies.div_ceil(groups);
    let mut result = SubResult {
        group,
        connected: false,
        seen: Vec::new(),
        unique: 0,
        duplicates: 0,
        foreign: 0,
        unparsed: 0,
        ended: None,
    };
    let path = format!("/ws/{}", cfg.groups[group]);
    let connecting = connect_with_retries(&cfg, &shared, &gate, &path);
    let mut ws = tokio::select! {
        r = connecting => match r {
            Ok(ws) => ws,
            Err(e) => {
                shared.failed.fetch_add(1, Relaxed);
                let mut errors = shared.connect_errors.lock().unwrap_or_else(|p| p.into_inner());
                *errors.entry(e.to_string()).or_default() += 1;
                return result;
            }
        },
        _ = shared.cancel.cancelled() => return result,
    };
    result.connected = true;
    result.seen = vec![0u64; per_group.div_ceil(64) as usize];
    shared.connected_per_group[group].fetch_add(1, Relaxed);
    shared.connected.fetch_add(1, Relaxed);

    let g = group as u64;
    let notifies = cfg.notifies;
    let mut latencies: Vec<u64> = Vec::with_capacity(64);
    let cancelled = shared.cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        let mut fresh = 0u64;
        let mut batch_ns = 0u64;
        let read = {
            let r = &mut result;
            let lat = &mut latencies;
            let on_text = |now: u64, frame: &[u8]| {
                batch_ns = now;
                let Some((seq, t)) = scan_seq_t(frame) else {
                    r.unparsed += 1;
                    return;
                };
                if seq >= notifies || seq % groups != g {
                    r.foreign += 1;
                    return;
                }
                let idx = seq / groups;
                let (w, b) = ((idx / 64) as usize, idx % 64);
                if r.seen[w] & (1 << b) != 0 {
                    r.duplicates += 1;
                    return;
                }
                r.seen[w] |= 1 << b;
                r.unique += 1;
                fresh += 1;
                lat.push(now.saturating_sub(t) / 1000);
            };
            tokio::select! {
                biased;
                _ = &mut cancelled => None,
                r = ws.read_batch(on_text) => Some(r),
            }
        };
        match read {
            None => {
                ws.close().await;
                break;
            }
            Some(Ok(ReadOutcome::Data)) => {
                if fresh > 0 {
                    shared.latency.record_all(index, &mut latencies);
                    shared.delivered.fetch_add(fresh, Relaxed);
                    shared.last_delivery_ns.fetch_max(batch_ns, Relaxed);
                }
            }
            Some(outcome) => {
                shared.latency.record_all(index, &mut latencies);
                shared.delivered.fetch_add(fresh, Relaxed);
                if fresh > 0 {
                    shared.last_delivery_ns.fetch_max(batch_ns, Relaxed);
                }
                shared.ended_early.fetch_add(1, Relaxed);
                result.ended = Some(match outcome {
                    Ok(ReadOutcome::Closed(Some(code))) => format!("close {code}"),
                    Ok(ReadOutcome::Closed(None)) => "close".to_string(),
                    Ok(_) => "eof".to_string(),
                    Err(e) => format!("error: {e}"),
                });
                break;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_seq_and_t() {
        let frame = br#"{"type":"notify","group":"bench-1-0","event":"bench","offset":3,"data":{"seq":42,"t":1700000000123456789,"pad":"xx"}}"#;
        assert_eq!(scan_seq_t(frame), Some((42, 1_700_000_000_123_456_789)));
        assert_eq!(scan_seq_t(br#"{"type":"pong"}"#), None);
    }
}
