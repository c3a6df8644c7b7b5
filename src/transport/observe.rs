//! Per-request observability, in one place: every HTTP request (upgrades included) runs
//! in a `request` span carrying a request id, answers with that id in `X-Request-Id`, and
//! is counted in the HTTP metrics under its route template.
//!
//! Only the route template is ever logged or used as a label, never the raw path or the
//! query string, which may carry a token (`/ws?token=...`).

use std::convert::Infallible;
use std::time::Instant;

use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::routes::{template, Serves};
use crate::state::AppState;

/// The request id header, read from requests and set on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest incoming request id herald adopts; longer ones are replaced.
const MAX_REQUEST_ID: usize = 64;

/// What the wrapper knows before the routes run.
struct Started {
    route: &'static str,
    id: HeaderValue,
    at: Instant,
}

/// Wraps `routes` (already infallible: every rejection rendered) with the request span,
/// the request id and the HTTP metrics. `serves` says which paths this listener serves,
/// which decides the route labels.
pub(super) fn observe<F>(state: &AppState, serves: Serves, routes: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let metrics = state.metrics.clone();
    let incoming = warp::header::optional::<String>(REQUEST_ID)
        .or(warp::any().map(|| None))
        .unify();
    warp::path::full()
        .and(incoming)
        .map(move |path: warp::path::FullPath, given: Option<String>| {
            let id = request_id(given.as_deref());
            tracing::Span::current().record("request_id", id.to_str().unwrap_or_default());
            Started {
                route: template(path.as_str(), serves),
                id,
                at: Instant::now(),
            }
        })
        .and(routes)
        .map(move |started: Started, mut res: Response| {
            let took = started.at.elapsed();
            let status = res.status().as_u16();
            metrics.http_request(started.route, status, took);
            tracing::debug!(
                status,
                took_us = took.as_micros() as u64,
                "request finished"
            );
            res.headers_mut().insert(REQUEST_ID, started.id);
            res
        })
        .with(warp::trace(move |info| {
            tracing::info_span!(
                "request",
                method = %info.method(),
                route = template(info.path(), serves),
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
