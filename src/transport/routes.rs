//! The whole URL table in one screen.
//!
//! Paths are matched before methods so an unknown path is a 404 and a known path with
//! the wrong method a 405; bodies are checked (type, size) by a filter before handlers.

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{admission, upgrade};
use crate::api::{self, body::json_body, error::handle_rejection, ApiError};
use crate::protocol::GroupName;
use crate::state::AppState;

/// Every route of a herald node, with errors rendered as JSON.
///
/// Order of checks per route: path and method (404/405), names in the path (400), then
/// authentication (401/403), then the body (415/413/400).
pub fn routes(state: AppState) -> BoxedFilter<(Response,)> {
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
        .and(warp::query::<api::groups::ListQuery>())
        .and_then(|state, q| respond(api::groups::list(state, q)));
    let get_group = warp::path!("groups" / String)
        .and(warp::get())
        .and_then(group_param)
        .and(backend.clone())
        .and(with_state.clone())
        .and(warp::query::<api::groups::ListQuery>())
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
        .and(with_state)
        .and_then(|state| respond(api::health::readyz(state)));

    ws_group
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
        .or(wrong_method())
        .unify()
        .recover(handle_rejection)
        .unify()
        .boxed()
}

/// A group name from the path, checked (400 `invalid_group`).
async fn group_param(raw: String) -> Result<GroupName, Rejection> {
    api::group_from_path(&raw).map_err(warp::reject::custom)
}

/// The methods each path accepts, for `405` answers with an `Allow` header. Keep in step
/// with the routes above (the bad-input e2e test checks every path).
fn allowed_methods(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["ws"] | ["ws", _] | ["groups"] | ["groups", _] | ["healthz"] | ["readyz"] => Some("GET"),
        ["notify"] | ["groups", _, "close"] | ["users", _, "close"] => Some("POST"),
        _ => None,
    }
}

/// Matches a known path requested with a method it does not accept (and nothing else),
/// rejecting with `405` and the allowed method.
fn wrong_method() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path::full().and(warp::method()).and_then(
        |path: warp::path::FullPath, method: warp::http::Method| async move {
            match allowed_methods(path.as_str()) {
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
