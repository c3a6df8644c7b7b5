//! What `soak` watches: the hub's RSS and its `herald_connections` gauge, sampled at a
//! fixed interval, and how fast the RSS grows.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

use crate::procfs::rss_kib;
use crate::report::{round1, thousands};
use crate::target::Target;

/// Reads the hub (`pid`'s RSS, the gauge at `metrics`) every `every` from `from` until
/// `end`, printing each reading to stderr.
pub async fn sample_until(
    pid: u32,
    metrics: &Target,
    from: Instant,
    every: Duration,
    end: Instant,
) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    let mut next = from;
    while next <= end {
        sleep_until(next).await;
        let at_s = from.elapsed().as_secs_f64();
        let sample = Sample {
            at_s,
            rss_kib: rss_kib(pid)?,
            gauge: scrape_connections(metrics).await,
        };
        eprintln!(
            "{:>6.0} s  RSS {} KiB  herald_connections {}",
            at_s,
            thousands(sample.rss_kib),
            sample.gauge.map_or("-".into(), |g| g.to_string())
        );
        samples.push(sample);
        next += every;
    }
    Ok(samples)
}

/// One reading of the hub.
#[derive(Clone, Copy)]
pub struct Sample {
    /// Seconds since the steady phase began.
    pub at_s: f64,
    pub rss_kib: u64,
    /// `herald_connections`, when the scrape worked.
    pub gauge: Option<u64>,
}

impl Sample {
    /// As the results list it: `[at_s, rss_kib, gauge]`.
    pub fn row(&self) -> (f64, u64, Option<u64>) {
        (round1(self.at_s), self.rss_kib, self.gauge)
    }
}

/// `herald_connections` from one scrape of `/metrics`; `None` if the scrape failed.
async fn scrape_connections(metrics: &Target) -> Option<u64> {
    let body = timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(metrics.addr).await.ok()?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            metrics.host
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await.ok()?;
        Some(body)
    })
    .await
    .ok()??;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("herald_connections "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Least-squares slope of RSS over time, KiB per minute (`None` under two samples).
pub fn slope_kib_per_min(samples: &[Sample]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean_t = samples.iter().map(|s| s.at_s).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for s in samples {
        let dt = s.at_s - mean_t;
        num += dt * (s.rss_kib as f64 - mean_r);
        den += dt * dt;
    }
    (den > 0.0).then(|| num / den * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_kib_per_minute() {
        let at = |at_s, rss_kib| Sample {
            at_s,
            rss_kib,
            gauge: None,
        };
        let rising = [at(0.0, 1000), at(30.0, 1010), at(60.0, 1020)];
        assert!((slope_kib_per_min(&rising).unwrap() - 20.0).abs() < 1e-9);
        let flat = [at(0.0, 1000), at(60.0, 1000)];
        assert_eq!(slope_kib_per_min(&flat), Some(0.0));
        assert_eq!(slope_kib_per_min(&flat[..1]), None);
    }
}
