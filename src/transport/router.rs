//! A listener's answer to each plain-HTTP request: its span, id and metrics (`observe`)
//! around either a hot route (`hot`), answered straight from the request, or warp's
//! route table (`routes`) for everything else.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use hyper_util::service::TowerToHyperService;
use warp::filters::BoxedFilter;
use warp::http::Request;
use warp::reply::Response;

use super::hot::{Hot, HotRoutes};
use super::http::{ClientAddr, TrackedBody};
use super::observe::{Observed, Recorder, RequestId};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::telemetry::Deferred;

/// warp's route table as a function from request to response.
type Table = Box<
    dyn Fn(Request<TrackedBody>) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync,
>;

/// The routes of one listener; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Router(Arc<Inner>);

struct Inner {
    metrics: Arc<Metrics>,
    /// `None` on a listener that does not serve the API.
    hot: Option<HotRoutes>,
    table: Table,
}

impl Router {
    /// `table` (every rejection already rendered), and the hot routes when the listener
    /// serves the API.
    pub(super) fn new(state: &AppState, table: BoxedFilter<(Response,)>, api: bool) -> Self {
        let service = TowerToHyperService::new(warp::service(table));
        let table: Table = Box::new(move |req| {
            let answer = hyper::service::Service::call(&service, req);
            Box::pin(async move {
                match answer.await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            })
        });
        Self(Arc::new(Inner {
            metrics: state.metrics.clone(),
            hot: api.then(|| HotRoutes::new(state)),
            table,
        }))
    }

    /// Answers `req`, which came from `remote`, inside its request span.
    pub(super) fn call(&self, mut req: Request<TrackedBody>, remote: SocketAddr) -> Answer {
        let inner = self.0.clone();
        let hot = inner
            .hot
            .as_ref()
            .and_then(|_| Hot::find(req.method(), req.uri().path()));
        let (observed, span) = Observed::start(req.method(), req.headers(), hot.map(Hot::template));
        // Two futures, boxed apart: a hot route's keeps neither the request (its head is
        // done with before the body is read) nor the route table's state, so that it fits
        // the allocator's small-size cache (about 1 KiB).
        let answer: Pin<Box<dyn Future<Output = Response> + Send>> = match (hot, &inner.hot) {
            (Some(route), Some(routes)) => {
                // The served future borrows nothing: `inner` itself moves into its end.
                let f = routes.serve(route, req).map(move |mut res| {
                    if let Some(routes) = &inner.hot {
                        let took =
                            observed.finish(&mut res, Recorder::Known(routes.metrics(route)));
                        routes.answered(route, res.status(), took);
                    }
                    res
                });
                Box::pin(f)
            }
            _ => {
                req.extensions_mut().insert(ClientAddr(remote));
                req.extensions_mut()
                    .insert(RequestId(observed.id().clone()));
                Box::pin(async move {
                    // Called here, inside the request span: warp's filters name it.
                    let mut res = (inner.table)(req).await;
                    observed.finish(&mut res, Recorder::ByTemplate(&inner.metrics));
                    res
                })
            }
        };
        Answer { span, answer }
    }
}

/// A request's answer, polled inside its request span.
///
/// The answer's own future (route, body read, handler: under 1 KiB for `POST /notify`)
/// is boxed where it is made, so that only this small value moves afterwards: awaited
/// inside another future, it would be copied into each enclosing one.
pub(super) struct Answer {
    span: Deferred,
    answer: Pin<Box<dyn Future<Output = Response> + Send>>,
}

impl Future for Answer {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        this.span.in_scope(|| this.answer.as_mut().poll(cx))
    }
}
