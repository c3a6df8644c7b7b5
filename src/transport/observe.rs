//! Per-request observability, in one place: every HTTP request (upgrades included) runs
//! in a `request` span carrying a request id, answers with that id in `X-Request-Id`, and
//! is counted in the HTTP metrics under its route template.
//!
//! Only the route template is ever logged or used as a label, never the raw path or the
//! query string, which may carry a token (`/ws?token=...`). The route that answers a
//! request names it (see `routes::Route`): this module knows no paths.

use std::convert::Infallible;
use std::time::Instant;

use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::AppState;

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest incoming request id herald adopts; longer ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// The `route` label of requests no route answered (404s).
const UNMATCHED: &str = "unmatched";

/// The template of the route that answers a request (`/groups/{group}`). The route names
/// the request span after it as soon as its path matched, and attaches it to its
/// response for the HTTP metrics.
#[derive(Debug, Clone, Copy)]
pub(super) struct Template(pub(super) &'static str);

impl Template {
    /// Records this template as the current request span's `route`.
    pub(super) fn enter(self) {
        tracing::Span::current().record("route", self.0);
    }
}

/// What the wrapper knows before the routes run.
struct Started {
    id: HeaderValue,
    at: Instant,
}

/// Wraps `routes` (already infallible: every rejection rendered) with the request span,
/// the request id and the HTTP metrics, labelled by the [`Template`] the answering route
/// attached to its response (`unmatched` when none did).
pub(super) fn observe<F>(state: &AppState, routes: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let state = state.clone();
    let incoming = warp::header::optional::<String>(REQUEST_ID)
        .or(warp::any().map(|| None))
        .unify();
    incoming
        .map(move |given: Option<String>| {
            let id = request_id(given.as_deref());
            tracing::Span::current().record("request_id", id.to_str().unwrap_or_default());
            Started {
                id,
                at: Instant::now(),
            }
        })
        .and(routes)
        .map(move |started: Started, mut res: Response| {
            let took = started.at.elapsed();
            let status = res.status().as_u16();
            let route = match res.extensions().get::<Template>() {
                Some(template) => template.0,
                None => {
                    Template(UNMATCHED).enter();
                    UNMATCHED
                }
            };
            state.metrics.http_request(route, status, took);
            tracing::debug!(
                status,
                took_us = took.as_micros() as u64,
                "request finished"
            );
            res.headers_mut().insert(REQUEST_ID, started.id);
            res
        })
        .with(warp::trace(|info| {
            tracing::info_span!(
                "request",
                method = %info.method(),
                route = tracing::field::Empty,
                request_id = tracing::field::Empty,
            )
        }))
        .map(Reply::into_response)
        .boxed()
}

/// The client's `X-Request-Id` when it is a sane short token (1–64 of `A-Z a-z 0-9 - _ .
/// :`), so ids from a proxy or a backend carry through; otherwise a fresh random one.
/// Anything else (long, binary, with spaces) is replaced rather than echoed into logs.
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
            let id = uuid::Uuid::new_v4().simple().to_string();
            HeaderValue::from_str(&id).expect("a hex uuid is a valid header value")
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
