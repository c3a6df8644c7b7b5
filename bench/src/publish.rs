//! The publishing side: C keep-alive HTTP connections sending `POST /notify`.
//!
//! Publishers run on their own OS thread with a current-thread runtime, so a flood of
//! deliveries waking subscriber tasks cannot delay the send clock (both threads share
//! the client's one core; the kernel time-slices them). Each notify carries
//! `{"seq":i,"t":<ns since epoch, stamped just before the write>,"pad":"xx…"}`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::oneshot;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::http::{sum_u64, HttpConn};
use crate::latency::{new_histogram, now_ns};
use crate::target::Target;

/// Longest wait for one reply before the connection is dropped and the notify counted
/// as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct PublishConfig {
    pub target: Target,
    pub groups: Arc<Vec<String>>,
    /// Seqs `0..notifies` are sent; seq `i` goes to group `i % groups.len()`.
    pub notifies: u64,
    /// Total notifies per second; None = as fast as the connections allow.
    pub rate: Option<f64>,
    pub publishers: usize,
    /// Length of the `pad` string in each notify's data.
    pub payload: usize,
    /// Notifies per request: 1 = `POST /notify`, more = `POST /notify/batch`.
    pub batch: u64,
    /// No request starts after this.
    pub deadline: std::time::Instant,
}

#[derive(Default)]
pub struct PublishResult {
    /// Seqs answered 202.
    pub accepted: Vec<u64>,
    pub accepted_per_group: Vec<u64>,
    pub non_202: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sum of `recipients` over the 202 replies.
    pub recipients: u64,
    pub first_send_ns: u64,
    pub last_reply_ns: u64,
    /// Request latency (write to full reply), µs.
    pub latency: Option<Histogram<u64>>,
}

impl PublishResult {
    /// Deliveries due: every accepted notify times the members its group had connected.
    pub fn expected_deliveries(&self, connected_per_group: &[std::sync::atomic::AtomicU64]) -> u64 {
        self.accepted_per_group
            .iter()
            .zip(connected_per_group)
            .map(|(n, c)| n * c.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

impl PublishResult {
    /// Seconds from the first send to the last reply.
    pub fn publish_s(&self) -> f64 {
        self.last_reply_ns.saturating_sub(self.first_send_ns) as f64 / 1e9
    }

    fn merge(&mut self, other: PublishResult) {
        self.accepted.extend(other.accepted);
        for (a, b) in self
            .accepted_per_group
            .iter_mut()
            .zip(&other.accepted_per_group)
        {
            *a += b;
        }
        self.non_202 += other.non_202;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.recipients += other.recipients;
        if other.first_send_ns != 0
            && (self.first_send_ns == 0 || other.first_send_ns < self.first_send_ns)
        {
            self.first_send_ns = other.first_send_ns;
        }
        self.last_reply_ns = self.last_reply_ns.max(other.last_reply_ns);
        match (&mut self.latency, other.latency) {
            (Some(a), Some(b)) => a.add(&b).expect("same bounds"),
            (a @ None, b) => *a = b,
            _ => {}
        }
    }
}

/// Starts the publishers on a thread of their own, at once; the future gives their
/// result when they are done.
pub fn spawn(
    cfg: PublishConfig,
) -> impl std::future::Future<Output = Result<PublishResult, String>> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("publishers".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime");
            let result = rt.block_on(run(cfg));
            let _ = tx.send(result);
        })
        .expect("spawn the publisher thread");
    async {
        rx.await
            .map_err(|_| "the publisher thread died".to_string())
    }
}

async fn run(cfg: PublishConfig) -> PublishResult {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.publishers.max(1) {
        tasks.spawn(publisher(cfg.clone(), next.clone(), start));
    }
    let mut total = PublishResult {
        accepted_per_group: vec![0; cfg.groups.len()],
        ..Default::default()
    };
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(r) => total.merge(r),
            Err(e) => eprintln!("publisher task failed: {e}"),
        }
    }
    total.accepted.sort_unstable();
    total
}

async fn publisher(cfg: PublishConfig, next: Arc<AtomicU64>, start: Instant) -> PublishResult {
    let groups = cfg.groups.len() as u64;
    let pad = "x".repeat(cfg.payload);
    let mut r = PublishResult {
        accepted_per_group: vec![0; cfg.groups.len()],
        latency: Some(new_histogram()),
        ..Default::default()
    };
    let mut conn: Option<HttpConn> = None;
    let batch = cfg.batch.max(1);
    let mut body = Vec::with_capacity((128 + cfg.payload) * batch as usize);
    loop {
        let first = next.fetch_add(batch, Relaxed);
        if first >= cfg.notifies || std::time::Instant::now() >= cfg.deadline {
            break;
        }
        let seqs = first..(first + batch).min(cfg.notifies);
        if let Some(rate) = cfg.rate {
            sleep_until(start + Duration::from_secs_f64(first as f64 / rate)).await;
        }
        if conn.is_none() {
            match HttpConn::connect(&cfg.target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    note_error(&mut r, format!("connect: {e}"));
                    sleep(Duration::from_millis(10)).await;
                    // The seqs taken are not sent: count them as not accepted.
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let t = now_ns();
        let path = write_body(&mut body, &cfg, seqs.clone(), t, &pad);
        if r.first_send_ns == 0 {
            r.first_send_ns = t;
        }
        let sent = std::time::Instant::now();
        match timeout(REQUEST_TIMEOUT, c.post_json(path, &body)).await {
            Ok(Ok(reply)) => {
                let status = reply.status;
                if status == 202 {
                    for i in seqs {
                        r.accepted.push(i);
                        r.accepted_per_group[(i % groups) as usize] += 1;
                    }
                    r.recipients += sum_u64(reply.body, b"\"recipients\":");
                } else {
                    r.non_202 += 1;
                }
                *r.statuses.entry(status).or_default() += 1;
                if let Some(h) = r.latency.as_mut() {
                    h.saturating_record(sent.elapsed().as_micros().max(1) as u64);
                }
                r.last_reply_ns = now_ns();
                if c.closing() {
                    conn = None;
                }
            }
            Ok(Err(e)) => {
                note_error(&mut r, format!("request: {e}"));
                conn = None;
            }
            Err(_) => {
                note_error(&mut r, "request timed out".to_string());
                conn = None;
            }
        }
    }
    r
}

/// Writes the request body for `seqs` (stamped `t`) and gives the path to post it to:
/// one notify to `POST /notify`, several as one `POST /notify/batch`.
fn write_body(
    body: &mut Vec<u8>,
    cfg: &PublishConfig,
    seqs: std::ops::Range<u64>,
    t: u64,
    pad: &str,
) -> &'static str {
    let groups = cfg.groups.len() as u64;
    let item = |body: &mut Vec<u8>, i: u64| {
        let group = &cfg.groups[(i % groups) as usize];
        let _ = write!(
            body,
            r#"{{"group":"{group}","event":"bench","data":{{"seq":{i},"t":{t},"pad":"{pad}"}}}}"#
        );
    };
    body.clear();
    if cfg.batch <= 1 {
        item(body, seqs.start);
        return "/notify";
    }
    body.extend_from_slice(br#"{"notifications":["#);
    for (k, i) in seqs.enumerate() {
        if k > 0 {
            body.push(b',');
        }
        item(body, i);
    }
    body.extend_from_slice(b"]}");
    "/notify/batch"
}

fn note_error(r: &mut PublishResult, e: String) {
    r.errors += 1;
    if r.first_error.is_none() {
        r.first_error = Some(e);
    }
}
