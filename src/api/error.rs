//! `ApiError`: every way an HTTP request can fail, mapped to a status and the JSON body
//! `{"error":"<code>","message":"<text>"}`. This is the only place a warp `Rejection`
//! becomes a response; 5xx details are logged, never sent.

use std::convert::Infallible;

use warp::http::StatusCode;
use warp::reject::Reject;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::protocol::close::InvalidClose;
use crate::protocol::{InvalidName, InvalidUserId};

/// An HTTP API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON of the wrong shape: missing, unknown or mistyped fields.
    #[error("{0}")]
    InvalidRequest(String),
    /// A group name breaks the naming rule.
    #[error("{0}")]
    InvalidGroup(InvalidName),
    /// An event name breaks the naming rule.
    #[error("{0}")]
    InvalidEvent(InvalidName),
    /// A user id breaks the user id rule.
    #[error("{0}")]
    InvalidUser(InvalidUserId),
    /// A close code or reason that cannot be sent.
    #[error("{0}")]
    InvalidClose(InvalidClose),
    /// A malformed query string.
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    /// A malformed header.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// No valid bearer token (or more than one).
    #[error("{0}")]
    Unauthorized(AuthError),
    /// A valid token without the right: a group it may not join, a missing scope, or an
    /// origin not in `--allowed-origins`.
    #[error("{0}")]
    Forbidden(String),
    /// No such route.
    #[error("no such endpoint; see openapi.yaml for the API")]
    NotFound,
    /// The route exists for other methods: the ones listed (sent as `Allow`).
    #[error("method not allowed on this endpoint; allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// A body (or one notification of a batch) over its size limit.
    #[error("{} is larger than {} bytes ({})", .0.what, .0.bytes, .0.flag)]
    PayloadTooLarge(BodyLimit),
    /// One notification of a `POST /notify/batch` is invalid: the error it would get
    /// as a `POST /notify` body, prefixed with its index.
    #[error("notifications[{index}]: {error}")]
    InBatch {
        /// The notification's index in the batch (from 0).
        index: usize,
        /// What is wrong with it.
        error: Box<ApiError>,
    },
    /// The body did not arrive within `--http-body-timeout`.
    #[error("the request body did not arrive within --http-body-timeout")]
    BodyTimeout,
    /// Body not declared as `application/json`.
    #[error("request body must be sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// A plain GET on a WebSocket endpoint.
    #[error("this endpoint needs a WebSocket upgrade: {0}")]
    UpgradeRequired(&'static str),
    /// `--max-connections` reached.
    #[error("connection limit reached, try again later or another node")]
    TooManyConnections,
    /// Shutting down.
    #[error("herald is shutting down")]
    ShuttingDown,
    /// The broker cannot serve.
    #[error("{0}")]
    Unavailable(#[from] BrokerError),
    /// A bug; details are in the log.
    #[error("internal error")]
    Internal,
}

impl Reject for ApiError {}

/// A size limit on a body, named in the 413 message with the flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit {
    /// What is limited ("request body", "notification").
    pub what: &'static str,
    /// Largest size allowed, in bytes.
    pub bytes: u32,
    /// The flag that sets it (`--max-body`).
    pub flag: &'static str,
}

impl BodyLimit {
    /// `--max-body`: every JSON body, and each notification of a batch.
    pub fn body(bytes: u32) -> Self {
        Self {
            what: "request body",
            bytes,
            flag: "--max-body",
        }
    }

    /// `--max-batch-body`: the whole `POST /notify/batch` body.
    pub fn batch(bytes: u32) -> Self {
        Self {
            what: "request body",
            bytes,
            flag: "--max-batch-body",
        }
    }
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::InvalidRequest(_)
            | Self::InvalidGroup(_)
            | Self::InvalidEvent(_)
            | Self::InvalidUser(_)
            | Self::InvalidClose(_)
            | Self::InvalidQuery(_)
            | Self::InvalidHeader(_)
            | Self::Unauthorized(AuthError::Ambiguous) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InBatch { error, .. } => error.status(),
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            Self::TooManyConnections | Self::ShuttingDown | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidGroup(_) => "invalid_group",
            Self::InvalidEvent(_) => "invalid_event",
            Self::InvalidUser(_) => "invalid_user",
            Self::Unauthorized(AuthError::Ambiguous) => "invalid_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::InvalidClose(InvalidClose::Code(_)) => "invalid_close_code",
            Self::InvalidClose(InvalidClose::Reason(_)) => "invalid_close_reason",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidHeader(_) => "invalid_header",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::InBatch { error, .. } => error.code(),
            Self::BodyTimeout => "request_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UpgradeRequired(_) => "upgrade_required",
            Self::TooManyConnections => "too_many_connections",
            Self::ShuttingDown => "shutting_down",
            Self::Unavailable(_) => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The JSON error response.
    pub fn to_response(&self) -> Response {
        let status = self.status();
        if status.is_server_error()
            && !matches!(self, Self::TooManyConnections | Self::ShuttingDown)
        {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut res = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        if let Self::MethodNotAllowed(allow) = self {
            res.headers_mut()
                .insert("allow", warp::http::HeaderValue::from_static(allow));
        }
        if let Self::Unauthorized(e) = self {
            // RFC 6750 §3: name the scheme; `invalid_token` once a token was presented.
            let challenge = match e {
                AuthError::Missing => r#"Bearer realm="herald""#,
                AuthError::Ambiguous => r#"Bearer realm="herald", error="invalid_request""#,
                AuthError::Invalid(_) => r#"Bearer realm="herald", error="invalid_token""#,
            };
            res.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static(challenge),
            );
        }
        if let Self::UpgradeRequired(_) = self {
            // RFC 6455 §4.4: tell the client which protocol version to use.
            res.headers_mut().insert(
                "sec-websocket-version",
                warp::http::HeaderValue::from_static("13"),
            );
            res.headers_mut()
                .insert("upgrade", warp::http::HeaderValue::from_static("websocket"));
        }
        res
    }
}

/// The one `recover`: turns every rejection into a JSON error.
pub async fn handle_rejection(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if let Some(e) = rejection.find::<ApiError>() {
        return Ok(e.to_response());
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        // Routes check their own method and name the one allowed (`routes::Route`);
        // only a warp method filter, which herald does not use, would get here.
        ApiError::MethodNotAllowed("GET, POST")
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::InvalidQuery(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::InvalidHeader(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::InvalidHeader(e.to_string())
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        ApiError::UnsupportedMediaType
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::Internal
    };
    Ok(err.to_response())
}
