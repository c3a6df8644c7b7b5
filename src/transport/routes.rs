//! The whole URL table in one screen: one small function per route, each naming its own
//! template and method, combined in [`routes`].
//!
//! Every route starts with its path and then [`Route::matched`], so an unknown path is a
//! 404 and a known path with the wrong method a 405; names in the path come next (400),
//! then authentication (401/403), then the body (415/413/400), checked by filters before
//! the handler runs. Once its path matched, a route answers the request itself (see
//! [`Route::serve`]), so the route template that labels metrics and spans comes from the
//! route that answered and is never worked out from the raw path.

use std::time::Instant;

use serde::de::DeserializeOwned;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::observe::Template;
use super::router::Router;
use super::{admission, resume, upgrade};
use crate::api::error::{handle_rejection, BodyLimit};
use crate::api::{self, body::json_body, ApiError};
use crate::protocol::{GroupName, UserId};
use crate::state::AppState;

/// Every route of the main listener (`--listen`), with errors rendered as JSON: the
/// WebSockets, the health checks, the backend API unless `--api-listen` gives it a
/// listener of its own ([`api_routes`]) and `/metrics` unless `--metrics-listen` does
/// ([`metrics_routes`]). With the API, `POST /notify` and `POST /notify/batch` are
/// answered before this table (`hot`), by the same steps.
pub fn routes(state: AppState) -> Router {
    let serves = Serves {
        websockets: true,
        api: state.config.api_listen.is_none(),
        metrics: state.config.metrics_listen.is_none(),
    };
    listener_routes(&state, serves)
}

/// The `--api-listen` listener's routes: the backend API and the health checks.
pub fn api_routes(state: AppState) -> Router {
    let serves = Serves {
        websockets: false,
        api: true,
        metrics: false,
    };
    listener_routes(&state, serves)
}

/// The `--metrics-listen` listener's routes: `GET /metrics` and nothing else.
pub fn metrics_routes(state: AppState) -> Router {
    let routes = metrics(&state).recover(handle_rejection).unify();
    Router::new(&state, routes.boxed(), false)
}

/// The routes `serves` names; the others are unknown paths (404).
fn listener_routes(state: &AppState, serves: Serves) -> Router {
    // What browsers load sits with the WebSockets: the public, browser-facing listener.
    let websockets = ws_group(state)
        .or(ws(state))
        .unify()
        .or(herald_js())
        .unify()
        .or(demo_page(state))
        .unify();
    let api = notify(state)
        .or(notify_batch(state))
        .unify()
        .or(list_groups(state))
        .unify()
        .or(get_group(state))
        .unify()
        .or(group_history(state))
        .unify()
        .or(close_group(state))
        .unify()
        .or(close_user(state))
        .unify();
    let routes = serving(serves.websockets)
        .and(websockets)
        .or(serving(serves.api).and(api))
        .unify()
        .or(healthz())
        .unify()
        .or(readyz(state))
        .unify()
        .or(serving(serves.metrics).and(metrics(state)))
        .unify();
    let table = routes.recover(handle_rejection).unify().boxed();
    Router::new(state, table, serves.api)
}

/// Which routes a listener serves; every listener but `--metrics-listen`'s also serves
/// `/healthz` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Serves {
    /// `/ws`, `/ws/{group}`, `/herald.js` and the demo page `/` (`--listen`).
    websockets: bool,
    /// `POST /notify`, `/groups…` (history included), `/users/{user}/close`
    /// (`--api-listen`, else `--listen`).
    api: bool,
    /// `GET /metrics` (`--listen` unless `--metrics-listen` is set).
    metrics: bool,
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

/// `GET /ws/{group}`: a WebSocket joined to the path's group, resuming it with
/// `?since=&epoch=`. The name (and the resume query) are checked before the handshake: a
/// bad one is a 400, never an upgrade.
fn ws_group(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/ws/{group}");
    route.serve(
        warp::path!("ws" / String)
            .and(route.matched())
            .and_then(group_param)
            .and(resume::query())
            .and(with_state(state))
            .and(upgrade::handshake())
            .and(admission::client(state.clone()))
            .and(super::http::remote())
            .and_then(|group, from, state, hs, admission, remote| {
                respond(upgrade::accept(
                    state,
                    Some(group),
                    from,
                    hs,
                    admission,
                    remote,
                ))
            }),
    )
}

/// `GET /ws`: a WebSocket that subscribes with frames.
fn ws(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/ws");
    route.serve(
        warp::path!("ws")
            .and(route.matched())
            .and(with_state(state))
            .and(upgrade::handshake())
            .and(admission::client(state.clone()))
            .and(super::http::remote())
            .and_then(|state, hs, admission, remote| {
                respond(upgrade::accept(state, None, None, hs, admission, remote))
            }),
    )
}

/// `POST /notify`, also counted in the notify metrics (every status, from the moment its
/// path matched to the answer).
fn notify(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::post("/notify");
    let served = route.serve(
        warp::path!("notify")
            .and(route.matched())
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(json_body(
                BodyLimit::body(state.config.max_body),
                state.config.http_body_timeout,
            ))
            .and_then(|state, body| respond(api::notify::notify(state, body))),
    );
    let counted = state.clone();
    warp::any()
        .map(Instant::now)
        .and(served)
        .map(move |started: Instant, res: Response| {
            counted
                .metrics
                .notify_request(res.status(), started.elapsed());
            res
        })
}

/// `POST /notify/batch`: its own, larger body limit (`--max-batch-body`).
fn notify_batch(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::post("/notify/batch");
    route.serve(
        warp::path!("notify" / "batch")
            .and(route.matched())
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(json_body(
                BodyLimit::batch(state.config.max_batch_body),
                state.config.http_body_timeout,
            ))
            .and_then(|state, body| respond(api::batch::notify_batch(state, body))),
    )
}

/// `GET /groups`.
fn list_groups(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/groups");
    route.serve(
        warp::path!("groups")
            .and(route.matched())
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(query::<api::groups::ListQuery>())
            .and_then(|state, q| respond(api::groups::list(state, q))),
    )
}

/// `GET /groups/{group}/history`.
fn group_history(
    state: &AppState,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/groups/{group}/history");
    route.serve(
        warp::path!("groups" / String / "history")
            .and(route.matched())
            .and_then(group_param)
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(query::<api::history::HistoryQuery>())
            .and_then(|g, state, q| respond(api::history::get(g, state, q))),
    )
}

/// `GET /groups/{group}`.
fn get_group(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/groups/{group}");
    route.serve(
        warp::path!("groups" / String)
            .and(route.matched())
            .and_then(group_param)
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(query::<api::groups::ListQuery>())
            .and_then(|g, state, q| respond(api::groups::get(g, state, q))),
    )
}

/// `POST /groups/{group}/close`.
fn close_group(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::post("/groups/{group}/close");
    route.serve(
        warp::path!("groups" / String / "close")
            .and(route.matched())
            .and_then(group_param)
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(json_body(
                BodyLimit::body(state.config.max_body),
                state.config.http_body_timeout,
            ))
            .and_then(|g, state, body| respond(api::groups::close(g, state, body))),
    )
}

/// `POST /users/{user}/close`.
fn close_user(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::post("/users/{user}/close");
    route.serve(
        warp::path!("users" / String / "close")
            .and(route.matched())
            .and_then(user_param)
            .and(admission::backend(state.clone()))
            .and(with_state(state))
            .and(json_body(
                BodyLimit::body(state.config.max_body),
                state.config.http_body_timeout,
            ))
            .and_then(|u, state, body| respond(api::users::close(u, state, body))),
    )
}

/// `GET /healthz`.
fn healthz() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/healthz");
    route.serve(
        warp::path!("healthz")
            .and(route.matched())
            .and_then(|| respond(api::health::healthz())),
    )
}

/// `GET /readyz`.
fn readyz(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/readyz");
    route.serve(
        warp::path!("readyz")
            .and(route.matched())
            .and(with_state(state))
            .and_then(|state| respond(api::health::readyz(state))),
    )
}

/// `GET /herald.js`: the browser client, embedded in the binary.
fn herald_js() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/herald.js");
    route.serve(
        warp::path!("herald.js")
            .and(route.matched())
            .and(if_none_match())
            .and_then(|etag| respond(api::assets::herald_js(etag))),
    )
}

/// `GET /`: the demo page. With `--demo false` the path is not served at all, so every
/// method gets the unknown-path 404 (never a 405 that would advertise it).
fn demo_page(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/");
    let on = state.config.demo;
    route.serve(
        warp::path::end()
            .and(serving(on))
            .and(route.matched())
            .and(if_none_match())
            .and_then(|etag| respond(api::assets::demo_page(etag))),
    )
}

/// `GET /metrics`.
fn metrics(state: &AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let route = Route::get("/metrics");
    route.serve(
        warp::path!("metrics")
            .and(route.matched())
            .and(with_state(state))
            .and_then(|state| respond(api::health::metrics(state))),
    )
}

/// One route's identity: its template (the `route` label of the HTTP metrics and request
/// spans, so never a raw path) and the one method it accepts.
#[derive(Debug, Clone, Copy)]
struct Route {
    template: &'static str,
    method: &'static str,
}

impl Route {
    const fn get(template: &'static str) -> Self {
        Self {
            template,
            method: "GET",
        }
    }

    const fn post(template: &'static str) -> Self {
        Self {
            template,
            method: "POST",
        }
    }

    /// Goes right after the route's path filter: names the request span after the
    /// template, then refuses any other method with 405 and an `Allow` header.
    fn matched(self) -> impl Filter<Extract = (), Error = Rejection> + Clone {
        warp::method()
            .and_then(move |method: Method| async move {
                Template(self.template).enter();
                if method.as_str() == self.method {
                    Ok(())
                } else {
                    Err(warp::reject::custom(ApiError::MethodNotAllowed(
                        self.method,
                    )))
                }
            })
            .untuple_one()
    }

    /// The finished route. A request whose path does not match passes on to the next
    /// route; once the path matched, this route answers: every rejection after that point
    /// is rendered by [`handle_rejection`], and the response carries the template.
    fn serve<F>(self, route: F) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone
    where
        F: Filter<Extract = (Response,), Error = Rejection> + Clone,
    {
        route
            .recover(|rejection: Rejection| async move {
                if rejection.is_not_found() {
                    return Err(rejection);
                }
                Ok(handle_rejection(rejection)
                    .await
                    .unwrap_or_else(|e| match e {}))
            })
            .unify()
            .map(move |mut res: Response| {
                res.extensions_mut().insert(Template(self.template));
                res
            })
    }
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

/// Hands each request a clone of the state (one reference count).
fn with_state(
    state: &AppState,
) -> impl Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    let state = state.clone();
    warp::any().map(move || state.clone())
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

/// A group name from the path, percent-decoded first (some clients encode `:`), then
/// checked (400 `invalid_group`).
async fn group_param(raw: String) -> Result<GroupName, Rejection> {
    let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
    GroupName::parse(&decoded).map_err(|e| warp::reject::custom(ApiError::InvalidGroup(e)))
}

/// A user id from the path, percent-decoded first, then checked (400 `invalid_user`).
async fn user_param(raw: String) -> Result<UserId, Rejection> {
    let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
    UserId::parse(&decoded).map_err(|e| warp::reject::custom(ApiError::InvalidUser(e)))
}

/// Adapts a handler's `Result<Response, ApiError>` to warp: errors become rejections
/// that [`handle_rejection`] renders, so there is one error path.
async fn respond(
    handler: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, Rejection> {
    handler.await.map_err(warp::reject::custom)
}
