//! The whole URL table in one screen.
//!
//! Paths are matched before methods so an unknown path is a 404 and a known path with
//! the wrong method a 405; bodies are checked (type, size) by a filter before handlers.

use serde::de::DeserializeOwned;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::observe::observe;
use super::{admission, upgrade};
use crate::api::{self, body::json_body, error::handle_rejection, ApiError};
use crate::protocol::GroupName;
use crate::state::AppState;

/// Every route of a herald node, with errors rendered as JSON.
///
/// Order of checks per route: path and method (404/405), names in the path (400), then
/// authentication (401/403), then the body (415/413/400).
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
    let serves = if state.config.metrics_listen.is_some() {
        Serves::AllButMetrics
    } else {
        Serves::All
    };
    let observed = state.clone();
    let max_body = state.config.max_body;
    let backend = admission::backend(state.clone());
    let client = admission::client(state.clone());
    let with_state = warp::any().map(move || state.clone());

    // The group name is checked before the handshake: a bad name is a 400, never an upgrade.
    let ws_group = warp::path!("ws" / String)
        .and(warp::get())
        .and_then(group_param)
        .and(with_state.clone())
        .and(upgrade::handshake())
        .and(client.clone())
        .and(warp::addr::remote())
        .and_then(|group, state, hs, admission, remote| {
            respond(upgrade::accept(state, Some(group), hs, admission, remote))
        });
    let ws = warp::path!("ws")
        .and(warp::get())
        .and(with_state.clone())
        .and(upgrade::handshake())
        .and(client)
        .and(warp::addr::remote())
        .and_then(|state, hs, admission, remote| {
            respond(upgrade::accept(state, None, hs, admission, remote))
        });

    let notify = warp::path!("notify")
        .and(warp::post())
        .and(backend.clone())
        .and(with_state.clone())
        .and(json_body(max_body))
        .and_then(|state, body| respond(api::notify::notify(state, body)));
    let list_groups = warp::path!("groups")
        .and(warp::get())
        .and(backend.clone())
        .and(with_state.clone())
        .and(query::<api::groups::ListQuery>())
        .and_then(|state, q| respond(api::groups::list(state, q)));
    let get_group = warp::path!("groups" / String)
        .and(warp::get())
        .and_then(group_param)
        .and(backend.clone())
        .and(with_state.clone())
        .and(query::<api::groups::ListQuery>())
        .and_then(|g, state, q| respond(api::groups::get(g, state, q)));
    let close_group = warp::path!("groups" / String / "close")
        .and(warp::post())
        .and_then(group_param)
        .and(backend.clone())
        .and(with_state.clone())
        .and(json_body(max_body))
        .and_then(|g, state, body| respond(api::groups::close(g, state, body)));
    let close_user = warp::path!("users" / String / "close")
        .and(warp::post())
        .and_then(
            |raw: String| async move { api::user_from_path(&raw).map_err(warp::reject::custom) },
        )
        .and(backend)
        .and(with_state.clone())
        .and(json_body(max_body))
        .and_then(|u, state, body| respond(api::users::close(u, state, body)));

    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and_then(|| respond(api::health::healthz()));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state.clone())
        .and_then(|state| respond(api::health::readyz(state)));
    let herald_js = warp::path!("herald.js")
        .and(warp::get())
        .and(if_none_match())
        .and_then(|etag| respond(api::assets::herald_js(etag)));
    let demo = warp::path::end()
        .and(warp::get())
        .and(with_state.clone())
        .and(if_none_match())
        .and_then(|state, etag| respond(api::assets::demo_page(state, etag)));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(serving(serves == Serves::All))
        .and(with_state)
        .and_then(|state| respond(api::health::metrics(state)));

    let routes = ws_group
        .or(ws)
        .unify()
        .or(notify)
        .unify()
        .or(list_groups)
        .unify()
        .or(get_group)
        .unify()
        .or(close_group)
        .unify()
        .or(close_user)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(herald_js)
        .unify()
        .or(demo)
        .unify()
        .or(metrics)
        .unify()
        .or(wrong_method(serves))
        .unify()
        .recover(handle_rejection)
        .unify();
    observe(&observed, serves, routes)
}

/// The `--metrics-listen` listener's routes: `GET /metrics` and nothing else.
pub fn metrics_routes(state: AppState) -> BoxedFilter<(Response,)> {
    let with_state = state.clone();
    let routes = warp::path!("metrics")
        .and(warp::get())
        .and(warp::any().map(move || with_state.clone()))
        .and_then(|state| respond(api::health::metrics(state)))
        .recover(handle_rejection)
        .unify();
    observe(&state, Serves::OnlyMetrics, routes)
}

/// Which paths a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Serves {
    /// The main listener without `--metrics-listen`.
    All,
    /// The main listener when `/metrics` has its own listener.
    AllButMetrics,
    /// The `--metrics-listen` listener.
    OnlyMetrics,
}

/// Passes when `on`; otherwise rejects as an unknown path (404).
fn serving(on: bool) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::any()
        .and_then(move || async move {
            if on {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// The query string parsed as `T`; a bad one is 400 `invalid_query`. Unlike
/// `warp::query`, which logs the raw query string when it fails to parse (and a query
/// may carry `token=`), nothing here logs it.
fn query<T: DeserializeOwned + Send + 'static>(
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded::from_str(&raw).map_err(|_| {
                warp::reject::custom(ApiError::InvalidQuery("Invalid query string".into()))
            })
        })
}

/// The `If-None-Match` header as text; a value that is not visible ASCII counts as
/// absent (the full file is sent), so a revalidation header can never fail a request.
fn if_none_match(
) -> impl Filter<Extract = (Option<String>,), Error = std::convert::Infallible> + Clone {
    warp::header::headers_cloned().map(|headers: warp::http::HeaderMap| {
        headers
            .get(warp::http::header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}

/// A group name from the path, checked (400 `invalid_group`).
async fn group_param(raw: String) -> Result<GroupName, Rejection> {
    api::group_from_path(&raw).map_err(warp::reject::custom)
}

/// Every path a listener serves: its route template (the `route` label of the HTTP
/// metrics and request spans, so never a raw path) and the one method it accepts (for
/// `405` answers with an `Allow` header). Keep in step with the routes above (the
/// bad-input e2e test checks every path).
fn route(path: &str, serves: Serves) -> Option<(&'static str, &'static str)> {
    let mut segments = path.trim_start_matches('/').split('/');
    let segments = [
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ];
    if serves == Serves::OnlyMetrics {
        return (segments == [Some("metrics"), None, None, None]).then_some(("/metrics", "GET"));
    }
    Some(match segments {
        [Some("ws"), None, ..] => ("/ws", "GET"),
        [Some("ws"), Some(_), None, _] => ("/ws/{group}", "GET"),
        [Some("notify"), None, ..] => ("/notify", "POST"),
        [Some("groups"), None, ..] => ("/groups", "GET"),
        [Some("groups"), Some(_), None, _] => ("/groups/{group}", "GET"),
        [Some("groups"), Some(_), Some("close"), None] => ("/groups/{group}/close", "POST"),
        [Some("users"), Some(_), Some("close"), None] => ("/users/{user}/close", "POST"),
        [Some(""), None, ..] => ("/", "GET"),
        [Some("herald.js"), None, ..] => ("/herald.js", "GET"),
        [Some("healthz"), None, ..] => ("/healthz", "GET"),
        [Some("readyz"), None, ..] => ("/readyz", "GET"),
        [Some("metrics"), None, ..] if serves == Serves::All => ("/metrics", "GET"),
        _ => return None,
    })
}

/// The route template of `path`, or `unmatched` for a path no route serves.
pub(super) fn template(path: &str, serves: Serves) -> &'static str {
    route(path, serves).map_or("unmatched", |(template, _)| template)
}

/// Matches a known path requested with a method it does not accept (and nothing else),
/// rejecting with `405` and the allowed method.
fn wrong_method(serves: Serves) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::full().and(warp::method()).and_then(
        move |path: warp::path::FullPath, method: warp::http::Method| async move {
            match route(path.as_str(), serves).map(|(_, allow)| allow) {
                Some(allow) if allow != method.as_str() => {
                    Err(warp::reject::custom(ApiError::MethodNotAllowed(allow)))
                }
                _ => Err(warp::reject::not_found()),
            }
        },
    )
}

/// Adapts a handler's `Result<Response, ApiError>` to warp: errors become rejections
/// that [`handle_rejection`] renders, so there is one error path.
async fn respond(
    handler: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, Rejection> {
    handler.await.map_err(warp::reject::custom)
}
