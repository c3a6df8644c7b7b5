//! The routes the load goes to, `POST /notify` and `POST /notify/batch`, answered
//! straight from the request instead of through warp's filter tree, whose nested futures
//! (built, moved and polled per request) cost more than the handler itself.
//!
//! Same steps as these routes in warp's table (`routes`), in the same order and from the
//! same functions: the token (`admission::check_backend`), the body
//! (`api::body::json_request_body`), the handler, errors rendered by `ApiError`. Only
//! the exact path with `POST` comes here; another method (405 with `Allow`) or a
//! trailing slash goes on to warp's table, which still has both routes.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt as _;
use warp::http::{Method, Request, StatusCode};
use warp::reply::Response;

use super::admission;
use super::http::TrackedBody;
use crate::api::error::BodyLimit;
use crate::api::{self, ApiError};
use crate::metrics::RouteMetrics;
use crate::state::AppState;

/// A hot route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hot {
    /// `POST /notify`.
    Notify,
    /// `POST /notify/batch`.
    Batch,
}

impl Hot {
    /// The hot route a request is for, if any.
    pub(super) fn find(method: &Method, path: &str) -> Option<Self> {
        if method != Method::POST {
            return None;
        }
        match path {
            "/notify" => Some(Self::Notify),
            "/notify/batch" => Some(Self::Batch),
            _ => None,
        }
    }

    /// The route's template, as warp's table names it too.
    pub(super) fn template(self) -> &'static str {
        match self {
            Self::Notify => "/notify",
            Self::Batch => "/notify/batch",
        }
    }
}

/// The hot routes of a listener that serves the API, with their HTTP metrics looked up
/// once.
pub(super) struct HotRoutes {
    state: AppState,
    notify: RouteMetrics,
    batch: RouteMetrics,
}

impl HotRoutes {
    pub(super) fn new(state: &AppState) -> Self {
        Self {
            notify: state.metrics.route(Hot::Notify.template()),
            batch: state.metrics.route(Hot::Batch.template()),
            state: state.clone(),
        }
    }

    /// Where `route`'s requests are counted.
    pub(super) fn metrics(&self, route: Hot) -> &RouteMetrics {
        match route {
            Hot::Notify => &self.notify,
            Hot::Batch => &self.batch,
        }
    }

    /// Answers a request for `route`. Not an `async fn`: the token and the body's
    /// headers are checked now, so the future keeps only the body being read (not the
    /// request's head) and does not borrow `self`.
    pub(super) fn serve(
        &self,
        route: Hot,
        req: Request<TrackedBody>,
    ) -> impl Future<Output = Response> + Send + 'static {
        let config = &self.state.config;
        let state = self.state.clone();
        let limit = match route {
            Hot::Notify => BodyLimit::body(config.max_body),
            Hot::Batch => BodyLimit::batch(config.max_batch_body),
        };
        let body = self.body(req, limit);
        // `then`, not an `async` block awaiting `body`: the body's future and the
        // handler's take turns in one place instead of each having its own. The
        // handler's is `notify`'s answer (usually a ready response) or the batch's, boxed:
        // a batch costs that once for all its items.
        body.then(move |read| {
            let answer = match read {
                Ok(raw) => match route {
                    Hot::Notify => api::notify::notify(state, raw),
                    Hot::Batch => Either::Right(api::batch::notify_batch(state, raw).boxed()),
                },
                Err(e) => Either::Left(std::future::ready(Err(e))),
            };
            answer.map(|answer| answer.unwrap_or_else(|e| e.to_response()))
        })
    }

    /// A request for `route` was answered with `status` after `took` (the time its HTTP
    /// metrics count too): `POST /notify` is also counted in the notify metrics, every
    /// status included.
    pub(super) fn answered(&self, route: Hot, status: StatusCode, took: Duration) {
        if route == Hot::Notify {
            self.state.metrics.notify_request(status, took);
        }
    }

    /// The checks before the handler, as in warp's table: the backend token, then the
    /// JSON body within `limit`. Not an `async fn`: the body's future is returned as it
    /// is, rather than inside another that would carry (and copy) it.
    fn body(
        &self,
        req: Request<TrackedBody>,
        limit: BodyLimit,
    ) -> impl Future<Output = Result<Bytes, ApiError>> {
        let admitted = admission::check_backend(&self.state, req.headers());
        let (head, body) = req.into_parts();
        match admitted {
            Ok(()) => Either::Left(api::body::json_request_body(
                &head.headers,
                body,
                limit,
                self.state.config.http_body_timeout,
            )),
            Err(e) => Either::Right(std::future::ready(Err(e))),
        }
    }
}
