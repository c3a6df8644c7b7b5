//! Configuration: one clap struct, every flag also readable from a `HERALD_*` variable.
//! Parsed once in `main` and passed down; nothing else reads the environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use jsonwebtoken::Algorithm;

mod origin;

pub use origin::{InvalidOrigin, OriginPattern};

/// herald: a notification hub. WebSocket clients join named groups; backends send
/// events to a group with `POST /notify`.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for WebSocket and HTTP API traffic. Port 0 picks a free port.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Most WebSocket connections at once; past it upgrades get 503. Keep it below the
    /// process's open-file limit (each connection is one file descriptor).
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 15_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Per-connection outbound queue, in messages. A client that falls this far behind is
    /// closed with 4100 (slow consumer) instead of slowing anyone else down.
    #[arg(long, env = "HERALD_SEND_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub send_queue: u32,

    /// Largest frame a client may send, in bytes; larger ones close the socket with 1009.
    #[arg(long, env = "HERALD_MAX_FRAME", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(128..))]
    pub max_frame: u32,

    /// Largest HTTP request body, in bytes; larger ones get 413.
    #[arg(long, env = "HERALD_MAX_BODY", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(128..))]
    pub max_body: u32,

    /// Largest `POST /notify/batch` body, in bytes; larger ones get 413. Each notification
    /// in it is still held to `--max-body`.
    #[arg(long, env = "HERALD_MAX_BATCH_BODY", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(128..))]
    pub max_batch_body: u32,

    /// Most groups one connection may be in at once.
    #[arg(long, env = "HERALD_MAX_SUBSCRIPTIONS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscriptions: u32,

    /// On SIGTERM/SIGINT: how long to wait for connections to close (each gets 1012) and
    /// in-flight requests to finish before exiting anyway. E.g. `30s`, `500ms`, `2m`.
    #[arg(long, env = "HERALD_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// How often to ping a connection from which nothing has arrived.
    #[arg(long, env = "HERALD_PING_INTERVAL", default_value = "25s", value_parser = parse_positive_duration)]
    pub ping_interval: Duration,

    /// How long after a ping with nothing received to close the connection with 4101.
    #[arg(long, env = "HERALD_PING_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    pub ping_timeout: Duration,

    /// How long a write to one client may stall (its socket accepting no bytes) before the
    /// connection is dropped as a slow consumer.
    #[arg(long, env = "HERALD_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub write_timeout: Duration,

    /// Notifications each group keeps for clients that resume with `since` (the latest
    /// ones). 0 turns history off.
    #[arg(long, env = "HERALD_HISTORY_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub history_size: u32,

    /// How long a group's history is kept after its last notification (a group without
    /// members also forgets its offset then, and starts a new epoch). 0 turns history off.
    #[arg(long, env = "HERALD_HISTORY_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub history_ttl: Duration,

    /// Most bytes the history of all groups may hold together (frames plus bookkeeping);
    /// past it the oldest entries go first. Takes `KiB`, `MiB` and `GiB` suffixes.
    #[arg(long, env = "HERALD_HISTORY_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub history_max_bytes: u64,

    /// Let members send `{"type":"publish",...}` frames to their groups. Off by default:
    /// normally only backends publish, through `POST /notify`.
    #[arg(long, env = "HERALD_CLIENT_PUBLISH", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub client_publish: bool,

    /// Serve the demo page at `GET /` (join a group, watch notifications arrive, send
    /// one). `false` makes `/` a 404; `/herald.js` is always served.
    #[arg(long, env = "HERALD_DEMO", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub demo: bool,

    /// Serve `GET /metrics` (Prometheus) on this separate address instead of `--listen`,
    /// e.g. to keep it off a public port. Unset: `/metrics` is on the main listener.
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve the backend API (`POST /notify`, `/groups…`, `/users/{user}/close`) on this
    /// separate address only, e.g. a private interface, so that public traffic on
    /// `--listen` can never crowd out backends. Unset: the API is on `--listen`.
    #[arg(long, env = "HERALD_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,

    /// How long a client may take to send a whole HTTP request head, counted from its
    /// first byte (or from connecting), not per read; slower connections are closed.
    #[arg(long, env = "HERALD_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_header_timeout: Duration,

    /// How long a client may take to send a request body; past it the answer is 408.
    #[arg(long, env = "HERALD_HTTP_BODY_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub http_body_timeout: Duration,

    /// How long a kept-alive HTTP connection may wait for its next request.
    #[arg(long, env = "HERALD_HTTP_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub http_idle_timeout: Duration,

    /// Most plain-HTTP connections (everything but WebSockets) at once, per listener.
    /// At the cap a new connection takes the slot of the one that has waited longest
    /// for a request; when every connection is busy with a request, it gets 503.
    #[arg(long, env = "HERALD_MAX_HTTP_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_http_connections: u32,

    /// Largest HTTP request head (request line and headers), in bytes; larger ones get
    /// 431. Bounds the memory an unfinished head can hold.
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(8192..=1_048_576))]
    pub max_header_bytes: u32,

    /// Log format: `text` for people, `json` for log pipelines. Filter with `RUST_LOG`.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Shared secret for HS256/HS384/HS512 tokens. Setting a key turns authentication on.
    /// Prefer `--jwt-secret-file` or the variable: a flag shows up in `ps`.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true, conflicts_with_all = ["jwt_secret_file", "jwt_public_key_file"])]
    pub jwt_secret: Option<Secret>,

    /// File holding the shared secret for HS256/HS384/HS512 tokens (one trailing newline
    /// is ignored). Setting a key turns authentication on.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET_FILE",
        conflicts_with = "jwt_public_key_file"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM file with the public key for RS*/PS*, ES256/ES384 or EdDSA tokens. Setting a
    /// key turns authentication on.
    #[arg(long, env = "HERALD_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// The one token algorithm accepted. Default: HS256 with a secret, otherwise RS256,
    /// ES256 or EdDSA after the kind of public key.
    #[arg(long, env = "HERALD_JWT_ALGORITHM", value_parser = parse_algorithm)]
    pub jwt_algorithm: Option<Algorithm>,

    /// Required `iss` claim: tokens from any other issuer are refused.
    #[arg(long, env = "HERALD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim: tokens for any other audience are refused. When unset, a
    /// token that names an audience at all is refused (RFC 7519 §4.1.3).
    #[arg(long, env = "HERALD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed on `exp` and `nbf`, in whole seconds; a connection is closed
    /// with 4102 this long after its token's `exp`.
    #[arg(long, env = "HERALD_JWT_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// With authentication on, every connection also joins the group `<prefix><sub>`
    /// (e.g. `user:42`), so a backend can reach all of one user's tabs. Empty turns it off.
    #[arg(long, env = "HERALD_PERSONAL_GROUP_PREFIX", default_value = "user:")]
    pub personal_group_prefix: String,

    /// Redis URL (`redis://host:6379/0`; a password in it is never printed): selects the
    /// Redis broker, so several herald nodes share groups. With `--redis-cluster`, a
    /// comma-separated list of seed nodes. Unset: the embedded single-node broker.
    #[arg(long, env = "HERALD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// Treat `--redis-url` as a Redis Cluster and use sharded pub/sub (SPUBLISH /
    /// SSUBSCRIBE), so fan-out traffic spreads over the shards.
    #[arg(long, env = "HERALD_REDIS_CLUSTER", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", requires = "redis_url")]
    pub redis_cluster: bool,

    /// Namespace of every Redis key and channel herald uses (no `{` or `}`).
    #[arg(long, env = "HERALD_REDIS_PREFIX", default_value = "herald:", value_parser = parse_redis_prefix)]
    pub redis_prefix: String,

    /// How long a node's subscriber counts stay in Redis after its last heartbeat (it
    /// refreshes them every third of this): a node that dies drops out of the
    /// cluster-wide counts within this time.
    #[arg(long, env = "HERALD_REDIS_NODE_TTL", default_value = "15s", value_parser = parse_node_ttl)]
    pub redis_node_ttl: Duration,

    /// Comma-separated origins allowed to open WebSockets, `*` matching any part of a
    /// host or port (`https://*.example.com,http://localhost:*`). Unset: every origin.
    /// Requests without `Origin` (non-browser clients) are always allowed.
    #[arg(long, env = "HERALD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<OriginPattern>>,
}

/// A secret value: usable in code, printed as `[redacted]` by `Debug` so that logging
/// the effective `Config` never leaks it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl Config {
    /// The limits every plain-HTTP connection is served with.
    pub fn http_limits(&self) -> crate::transport::HttpLimits {
        crate::transport::HttpLimits {
            deadlines: crate::transport::ReadDeadlines {
                header: self.http_header_timeout,
                idle: self.http_idle_timeout,
            },
            max_head_bytes: self.max_header_bytes as usize,
            max_connections: self.max_http_connections as usize,
        }
    }
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    s.parse()
        .map_err(|_| "expected one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA".into())
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The history settings brokers apply.
    pub fn history(&self) -> crate::broker::HistorySettings {
        crate::broker::HistorySettings {
            size: self.history_size as usize,
            ttl: self.history_ttl,
            max_bytes: usize::try_from(self.history_max_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// A byte count: a whole number with an optional `KiB`, `MiB` or `GiB` suffix.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        .into_iter()
        .find_map(|(suffix, unit)| s.strip_suffix(suffix).map(|n| (n.trim(), unit)))
        .unwrap_or((s, 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("expected a byte count such as 1048576 or 256MiB, got {s:?}"))
}

fn parse_redis_prefix(s: &str) -> Result<String, String> {
    crate::broker::redis::Keys::check_prefix(s).map(|()| s.to_owned())
}

fn parse_node_ttl(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d < Duration::from_secs(1) => Err("must be at least 1s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_durations_use_humantime() {
        let c = Config::try_parse_from([
            "herald",
            "--listen",
            "0.0.0.0:9000",
            "--drain-timeout",
            "500ms",
            "--client-publish",
            "--send-queue",
            "8",
            "--ping-interval",
            "2m",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.drain_timeout, Duration::from_millis(500));
        assert_eq!(c.ping_interval, Duration::from_secs(120));
        assert!(c.client_publish);
        assert_eq!(c.send_queue, 8);
        assert_eq!(c.history_size, 100);
        assert_eq!(c.history_ttl, Duration::from_secs(300));
        assert_eq!(c.history_max_bytes, 256 << 20);
    }

    #[test]
    fn history_flags_parse_byte_suffixes_and_zero() {
        let c = Config::try_parse_from([
            "herald",
            "--history-size",
            "0",
            "--history-ttl",
            "0s",
            "--history-max-bytes",
            "2KiB",
        ])
        .unwrap();
        assert_eq!((c.history_size, c.history_max_bytes), (0, 2048));
        assert!(!c.history().is_on());
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1MiB").is_err());
    }

    #[test]
    fn the_demo_page_is_on_unless_turned_off() {
        let parse = |args: &[&str]| Config::try_parse_from([&["herald"], args].concat());
        assert!(parse(&[]).unwrap().demo);
        assert!(parse(&["--demo"]).unwrap().demo);
        assert!(!parse(&["--demo", "false"]).unwrap().demo);
        assert!(parse(&["--demo", "maybe"]).is_err());
    }

    #[test]
    fn auth_flags_parse_and_the_secret_never_prints() {
        let c = Config::try_parse_from([
            "herald",
            "--jwt-secret",
            "hunter2",
            "--jwt-algorithm",
            "HS512",
            "--allowed-origins",
            "https://*.example.com, http://localhost:*",
            "--personal-group-prefix=",
        ])
        .unwrap();
        assert_eq!(c.jwt_algorithm, Some(Algorithm::HS512));
        assert_eq!(c.allowed_origins.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.jwt_leeway, Duration::from_secs(5));
        assert_eq!(c.personal_group_prefix, "");
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && printed.contains("[redacted]"));
        assert!(Config::try_parse_from([
            "herald",
            "--jwt-secret",
            "a",
            "--jwt-public-key-file",
            "k.pem"
        ])
        .is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["herald", "--send-queue", "0"][..],
            &["herald", "--ping-interval", "0s"],
            &["herald", "--drain-timeout", "soon"],
            &["herald", "--listen", "nowhere"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
