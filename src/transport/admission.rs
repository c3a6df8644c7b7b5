//! Who may come in: the warp filters that find a bearer token in a request, verify it
//! and check the origin, before any upgrade or handler runs. The checks themselves are
//! the pure functions of [`crate::auth`].
//!
//! Tokens are never logged. A token in the query string does end up in the access logs
//! of proxies and load balancers in front of herald, which is why the header and the
//! subprotocol are preferred.

use warp::http::{HeaderMap, HeaderName, HeaderValue};
use warp::{Filter, Rejection};

use crate::api::ApiError;
use crate::auth::{bearer, origin_allowed, AuthError, Claims, NOTIFY_SCOPE};
use crate::metrics::RejectReason;
use crate::state::AppState;

/// What an upgrade request proved.
#[derive(Debug)]
pub struct Admission {
    /// The verified token's claims; `None` when auth is off.
    pub claims: Option<Claims>,
    /// The `herald.bearer.<token>` subprotocol the client offered, which the 101 echoes.
    pub protocol: Option<HeaderValue>,
}

/// For WebSocket upgrades: `Origin` against `--allowed-origins` (403), then, with auth
/// on, exactly one token from the `Authorization` header, the subprotocol or `?token=`
/// (401 when missing or invalid).
pub fn client(state: AppState) -> impl Filter<Extract = (Admission,), Error = Rejection> + Clone {
    warp::header::optional::<String>("origin")
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .and_then(move |origin, headers: HeaderMap, query| {
            let state = state.clone();
            async move {
                let admitted = single_authorization(&headers).and_then(|authorization| {
                    let protocols = joined(&headers, warp::http::header::SEC_WEBSOCKET_PROTOCOL);
                    admit(&state, origin, authorization, protocols, query)
                });
                admitted.map_err(|e| {
                    // `admit` refuses with 403 for the origin only; everything else is the token.
                    let why = match e {
                        ApiError::Forbidden(_) => RejectReason::Origin,
                        _ => RejectReason::Auth,
                    };
                    state.metrics.connection_rejected(why);
                    warp::reject::custom(e)
                })
            }
        })
}

fn admit(
    state: &AppState,
    origin: Option<String>,
    authorization: Option<String>,
    protocols: Option<String>,
    query: String,
) -> Result<Admission, ApiError> {
    if !origin_allowed(state.config.allowed_origins.as_deref(), origin.as_deref()) {
        return Err(ApiError::Forbidden(format!(
            "origin {:?} may not open WebSockets here (--allowed-origins)",
            origin.unwrap_or_default()
        )));
    }
    let offered = match protocols.as_deref().map(bearer::from_protocols) {
        Some(found) => found.map_err(ApiError::Unauthorized)?,
        None => None,
    };
    // Echoed even with auth off, so one client works against either configuration (a
    // client that offered a protocol fails the handshake when none is chosen).
    let protocol = offered.and_then(|(p, _)| HeaderValue::from_str(p).ok());
    let Some(verifier) = &state.verifier else {
        return Ok(Admission {
            claims: None,
            protocol,
        });
    };

    let from_query = bearer::from_query(&query).map_err(ApiError::Unauthorized)?;
    let mut tokens = authorization
        .as_deref()
        .and_then(bearer::from_authorization)
        .into_iter()
        .chain(offered.map(|(_, t)| t))
        .chain(from_query.as_deref());
    let token = tokens
        .next()
        .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    if tokens.next().is_some() {
        return Err(ApiError::Unauthorized(AuthError::Ambiguous));
    }
    let claims = verifier.verify(token).map_err(ApiError::Unauthorized)?;
    Ok(Admission {
        claims: Some(claims),
        protocol,
    })
}

/// For the HTTP API: with auth on, an `Authorization: Bearer` token (401) whose `scope`
/// lists `notify` (403).
pub fn backend(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let state = state.clone();
            async move {
                single_authorization(&headers)
                    .and_then(|authorization| check_backend(&state, authorization))
                    .map_err(warp::reject::custom)
            }
        })
        .untuple_one()
}

/// The `Authorization` header's value, if any. Two such headers are a `400`: herald
/// will not pick one of two credentials.
fn single_authorization(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(warp::http::header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::Unauthorized(AuthError::Ambiguous));
    }
    first
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::InvalidHeader("Authorization is not visible ASCII".into()))
        })
        .transpose()
}

/// Every value of header `name`, joined with commas as RFC 9110 §5.3 allows for
/// list-valued headers; values that are not text are skipped.
fn joined(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn check_backend(state: &AppState, authorization: Option<String>) -> Result<(), ApiError> {
    let Some(verifier) = &state.verifier else {
        return Ok(());
    };
    let token = authorization
        .as_deref()
        .and_then(bearer::from_authorization)
        .ok_or(ApiError::Unauthorized(AuthError::Missing))?;
    let claims = verifier.verify(token).map_err(ApiError::Unauthorized)?;
    if !claims.has_scope(NOTIFY_SCOPE) {
        return Err(ApiError::Forbidden(format!(
            "the token's `scope` claim must include `{NOTIFY_SCOPE}` to use the HTTP API"
        )));
    }
    Ok(())
}

/// The raw query string, empty when there is none. (`warp::query::raw` rejects a
/// missing query, and `warp::query::query` logs the query, token included, when it
/// fails to parse.)
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}
