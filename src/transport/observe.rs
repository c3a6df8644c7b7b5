//! Per-request observability, in one place: every HTTP request (upgrades included) runs
//! in a `request` span carrying a request id, answers with that id in `X-Request-Id`, and
//! is counted in the HTTP metrics under its route template.
//!
//! Only the route template is ever logged or used as a label, never the raw path or the
//! query string, which may carry a token (`/ws?token=...`). The route that answers a
//! request names it (see `routes::Route` and `hot`): this module knows no paths. It
//! wraps each request's whole answer in `router`, outside warp's filter tree.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::field::Empty;
use tracing::Metadata;
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method};
use warp::reply::Response;

use crate::metrics::{Metrics, RouteMetrics};
use crate::telemetry::{Deferred, RequestFields, ShortText};

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// [`REQUEST_ID`] as a header name, made once.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Longest incoming request id herald adopts; longer ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// The `route` label of requests no route answered (404s).
const UNMATCHED: &str = "unmatched";

/// The template of the route that answers a request (`/groups/{group}`). A route of
/// warp's table names the request span after it as soon as its path matched, and
/// attaches it to its response for the HTTP metrics.
#[derive(Debug, Clone, Copy)]
pub(super) struct Template(pub(super) &'static str);

impl Template {
    /// Records this template as the current request span's `route`.
    pub(super) fn enter(self) {
        tracing::Span::current().record("route", self.0);
    }
}

/// Where a request's HTTP metrics go.
#[derive(Clone, Copy)]
pub(super) enum Recorder<'a> {
    /// A route known before routing, whose metrics were looked up once.
    Known(&'a RouteMetrics),
    /// Under the [`Template`] the answering route attached (`unmatched` when none did).
    ByTemplate(&'a Metrics),
}

/// A request's id, as the request extension the routes of warp's table can read: a
/// WebSocket session logs under its upgrade request's id for its whole life.
#[derive(Debug, Clone)]
pub(super) struct RequestId(pub(super) HeaderValue);

/// One request being observed: its id and when it began.
pub(super) struct Observed {
    id: HeaderValue,
    at: Instant,
}

impl Observed {
    /// Starts observing a request: adopts its `X-Request-Id` or makes one up, and gives
    /// its `request` span, which the caller runs the whole answer in. `route` is the
    /// template when it is known before routing (the hot routes): the span is then only
    /// made if something logs inside it ([`Deferred`]). Otherwise the matching route
    /// records it ([`Template::enter`]). The span gets every known field at once:
    /// recording one later costs as much again.
    pub(super) fn start(
        method: &Method,
        headers: &HeaderMap,
        route: Option<&'static str>,
    ) -> (Self, Deferred) {
        let given = headers
            .get(&REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        let id = request_id(given);
        let span = match (route, request_callsite()) {
            (Some(route), Some(meta)) => Deferred::new(RequestFields {
                meta,
                method: method.clone(),
                route,
                request_id: ShortText::new(id.to_str().unwrap_or_default()),
            }),
            (Some(route), None) => Deferred::made(tracing::info_span!(
                "request",
                method = %method,
                route,
                request_id = id.to_str().unwrap_or_default(),
            )),
            (None, _) => Deferred::made(tracing::info_span!(
                "request",
                method = %method,
                route = Empty,
                request_id = id.to_str().unwrap_or_default(),
            )),
        };
        let observed = Self {
            id,
            at: Instant::now(),
        };
        (observed, span)
    }

    /// The id the request is answered with.
    pub(super) fn id(&self) -> &HeaderValue {
        &self.id
    }

    /// Ends the request, inside its span: counts it in the HTTP metrics, logs it at
    /// DEBUG and answers with its id. Returns how long it took.
    pub(super) fn finish(self, res: &mut Response, metrics: Recorder<'_>) -> Duration {
        let took = self.at.elapsed();
        let status = res.status();
        match metrics {
            Recorder::Known(route) => route.record(status, took),
            Recorder::ByTemplate(metrics) => {
                let route = match res.extensions().get::<Template>() {
                    Some(template) => template.0,
                    None => {
                        Template(UNMATCHED).enter();
                        UNMATCHED
                    }
                };
                metrics.http_request(route, status, took);
            }
        }
        tracing::debug!(
            status = status.as_u16(),
            took_us = took.as_micros() as u64,
            "request finished"
        );
        res.headers_mut().insert(REQUEST_ID_HEADER, self.id);
        took
    }
}

/// The callsite of the `request` span a [`Deferred`] makes: its name, level, target and
/// fields, in this order, are those of the spans made at once above.
fn request_callsite() -> Option<&'static Metadata<'static>> {
    static CALLSITE: OnceLock<Option<&'static Metadata<'static>>> = OnceLock::new();
    *CALLSITE.get_or_init(|| {
        tracing::info_span!("request", method = Empty, route = Empty, request_id = Empty).metadata()
    })
}

/// The client's `X-Request-Id` when it is a sane short token (1–64 of `A-Z a-z 0-9 - _ .
/// :`), so ids from a proxy or a backend carry through; otherwise a fresh one
/// ([`crate::id`]). Anything else (long, binary, with spaces) is replaced rather than
/// echoed into logs.
fn request_id(given: Option<&str>) -> HeaderValue {
    let sane = |s: &str| {
        (1..=MAX_REQUEST_ID).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    given
        .filter(|s| sane(s))
        .and_then(|s| HeaderValue::from_str(s).ok())
        .unwrap_or_else(|| {
            HeaderValue::from_bytes(&crate::id::next())
                .expect("hex digits are a valid header value")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_request_ids_are_kept_others_replaced() {
        assert_eq!(request_id(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in [
            None,
            Some(""),
            Some("has space"),
            Some("ünï"),
            Some(&"x".repeat(65)[..]),
        ] {
            let id = request_id(bad);
            assert_eq!(id.len(), 32, "{bad:?} -> {id:?}");
            assert!(id.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
