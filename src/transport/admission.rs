//! Who may come in: the warp filters that find a bearer token in a request, verify it
//! and check the origin, before any upgrade or handler runs. The checks themselves are
//! the pure functions of [`crate::auth`].
//!
//! Tokens are never logged. A token in the query string does end up in the access logs
//! of proxies and load balancers in front of herald, which is why the header and the
//! subprotocol are preferred.

use tokio::sync::OwnedSemaphorePermit;
use warp::http::{HeaderMap, HeaderName, HeaderValue};
use warp::{Filter, Rejection};

use crate::api::ApiError;
use crate::auth::{bearer, origin_allowed, AuthError, Claims, Grant, NOTIFY_SCOPE};
use crate::metrics::{Metrics, RejectReason};
use crate::protocol::GroupName;
use crate::state::AppState;

/// What an upgrade request proved.
#[derive(Debug)]
pub struct Admission {
    /// The verified token's claims; `None` when auth is off.
    pub claims: Option<Claims>,
    /// The `herald.bearer.<token>` subprotocol the client offered, which the 101 echoes.
    pub protocol: Option<HeaderValue>,
}

/// A connection let in: what its token allows and its place under `--max-connections`.
pub struct Admitted {
    /// The token's rights; `None` when auth is off (everything is allowed).
    pub grant: Option<Grant>,
    /// Held for the connection's life; returning it admits the next connection.
    pub permit: OwnedSemaphorePermit,
}

/// Why an upgrade was refused. Each kind has its own answer and its own
/// `herald_connections_rejected_total{reason}`, so neither is worked out from the other.
#[derive(Debug)]
pub enum Refusal {
    /// `Origin` is not in `--allowed-origins` (403); carries the origin.
    Origin(String),
    /// No valid token, or more than one (401, or 400 for several).
    Token(AuthError),
    /// A valid token that does not allow the path's group (403); carries why.
    Forbidden(String),
    /// Shutdown has begun (503).
    ShuttingDown,
    /// `--max-connections` reached (503).
    Limit,
}

impl Refusal {
    /// The `reason` label this refusal is counted under.
    fn reason(&self) -> RejectReason {
        match self {
            Self::Origin(_) => RejectReason::Origin,
            Self::Token(_) => RejectReason::Auth,
            Self::Forbidden(_) => RejectReason::Forbidden,
            Self::ShuttingDown => RejectReason::ShuttingDown,
            Self::Limit => RejectReason::Limit,
        }
    }

    /// Counts the refusal and turns it into the error the client is answered with.
    pub fn counted(self, metrics: &Metrics) -> ApiError {
        metrics.connection_rejected(self.reason());
        match self {
            Self::Origin(origin) => ApiError::Forbidden(format!(
                "origin {origin:?} may not open WebSockets here (--allowed-origins)"
            )),
            Self::Token(e) => ApiError::Unauthorized(e),
            Self::Forbidden(why) => ApiError::Forbidden(why),
            Self::ShuttingDown => ApiError::ShuttingDown,
            Self::Limit => ApiError::TooManyConnections,
        }
    }
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
                let authorization = single_authorization(&headers).map_err(|e| {
                    state.metrics.connection_rejected(RejectReason::Auth);
                    warp::reject::custom(e)
                })?;
                let protocols = joined(&headers, warp::http::header::SEC_WEBSOCKET_PROTOCOL);
                check_client(&state, origin, authorization, protocols, query)
                    .map_err(|refusal| warp::reject::custom(refusal.counted(&state.metrics)))
            }
        })
}

fn check_client(
    state: &AppState,
    origin: Option<String>,
    authorization: Option<&str>,
    protocols: Option<String>,
    query: String,
) -> Result<Admission, Refusal> {
    if !origin_allowed(state.config.allowed_origins.as_deref(), origin.as_deref()) {
        return Err(Refusal::Origin(origin.unwrap_or_default()));
    }
    let offered = match protocols.as_deref().map(bearer::from_protocols) {
        Some(found) => found.map_err(Refusal::Token)?,
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

    let from_query = bearer::from_query(&query).map_err(Refusal::Token)?;
    let mut tokens = authorization
        .and_then(bearer::from_authorization)
        .into_iter()
        .chain(offered.map(|(_, t)| t))
        .chain(from_query.as_deref());
    let token = tokens.next().ok_or(Refusal::Token(AuthError::Missing))?;
    if tokens.next().is_some() {
        return Err(Refusal::Token(AuthError::Ambiguous));
    }
    let claims = verifier.verify(token).map_err(Refusal::Token)?;
    Ok(Admission {
        claims: Some(claims),
        protocol,
    })
}

/// The checks after the token, once the path's group is known: the token's right to
/// `group` (403), then shutdown and the connection limit (503).
pub fn admit(
    state: &AppState,
    group: Option<&GroupName>,
    claims: Option<Claims>,
) -> Result<Admitted, Refusal> {
    // Claims only come from the verifier, so its leeway (whole seconds) is the one that
    // applied to `exp` at the door and now times the connection's expiry.
    let leeway = state
        .verifier
        .as_ref()
        .map(|v| v.leeway())
        .unwrap_or_default();
    let prefix = &state.config.personal_group_prefix;
    let grant = claims.map(|c| Grant::new(c, prefix, leeway));
    if let (Some(grant), Some(group)) = (&grant, group) {
        grant
            .check_join(group)
            .map_err(|e| Refusal::Forbidden(e.to_string()))?;
    }
    if state.shutdown.is_cancelled() {
        return Err(Refusal::ShuttingDown);
    }
    let permit = state
        .connections
        .clone()
        .try_acquire_owned()
        .map_err(|_| Refusal::Limit)?;
    Ok(Admitted { grant, permit })
}

/// For the HTTP API: with auth on, an `Authorization: Bearer` token (401) whose `scope`
/// lists `notify` (403).
pub fn backend(state: AppState) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and_then(move |headers: HeaderMap| {
            let state = state.clone();
            async move { check_backend(&state, &headers).map_err(warp::reject::custom) }
        })
        .untuple_one()
}

/// [`backend`]'s check on a request's headers, for routes answered outside warp's filters.
pub fn check_backend(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let authorization = single_authorization(headers)?;
    let Some(verifier) = &state.verifier else {
        return Ok(());
    };
    let token = authorization
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

/// The `Authorization` header's value, if any. Two such headers are a `400`: herald
/// will not pick one of two credentials.
fn single_authorization(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(warp::http::header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::Unauthorized(AuthError::Ambiguous));
    }
    first
        .map(|v| {
            v.to_str()
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

/// The raw query string, empty when there is none. (`warp::query::raw` rejects a
/// missing query, and `warp::query::query` logs the query, token included, when it
/// fails to parse.)
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}
