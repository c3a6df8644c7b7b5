//! Log setup: `RUST_LOG`-style filtering, text or JSON lines.

mod deferred;
mod fields;

use tracing_subscriber::EnvFilter;

pub use deferred::{Deferred, DeferredSpans, RequestFields, ShortText};
pub use fields::{JsonFields, TextFields};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    // warp logs every client-caused connection failure (resets, unparsable requests) at
    // ERROR under `warp::server`; those are not herald errors, so they are off by default.
    // `warp::filters::trace` logs two INFO lines per request; herald's own request span
    // (transport::observe) logs one DEBUG line instead.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,warp::server=off,warp::filters::trace=off"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    // try_init: a second init (tests) is harmless. Span fields through herald's own
    // formatters (`fields`): every request has a span. Wrapped in `DeferredSpans`, so the
    // hot routes' spans are only made when they log (`deferred`).
    let _ = match format {
        LogFormat::Text => {
            DeferredSpans::try_init(builder.fmt_fields(TextFields::default()).finish())
        }
        LogFormat::Json => {
            DeferredSpans::try_init(builder.json().fmt_fields(JsonFields::default()).finish())
        }
    };
}
