//! The JSON body filter: content type, size limit and parsing, before any handler runs.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use warp::{Filter, Rejection};

use super::error::{ApiError, BodyLimit};

/// Extracts a request body within `limit` sent as `application/json`, arriving whole
/// `within` the given time (else 408).
///
/// The limit holds for chunked bodies too: the body is read incrementally and refused
/// as soon as it passes the limit, without buffering the rest.
pub fn json_body(
    limit: BodyLimit,
    within: Duration,
) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(
            move |content_type: Option<String>, length: Option<u64>, body| async move {
                tokio::time::timeout(within, read(content_type, length, body, limit))
                    .await
                    .unwrap_or(Err(ApiError::BodyTimeout))
                    .map_err(warp::reject::custom)
            },
        )
}

async fn read<S, B>(
    content_type: Option<String>,
    length: Option<u64>,
    body: S,
    limit: BodyLimit,
) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if !content_type.as_deref().is_some_and(is_json) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let max = limit.bytes as usize;
    if length.is_some_and(|l| l > max as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let mut out = BytesMut::with_capacity(length.map_or(1024, |l| l as usize));
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::InvalidRequest(format!("could not read the body: {e}")))?;
        if out.len() + chunk.remaining() > max {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses a JSON object body, telling syntax errors (`invalid_json`) from shape errors
/// (`invalid_request`). The result may borrow from `body`.
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let text = text(body)?;
    // serde's derived structs also accept a JSON array (fields by position); the API
    // takes objects only.
    if !crate::protocol::is_json_object(body) {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(json_error)?;
        return Err(ApiError::InvalidRequest(
            "the body must be a JSON object".into(),
        ));
    }
    serde_json::from_str(text).map_err(json_error)
}

/// The body as text. JSON is UTF-8; checking the whole body once here spares the parser
/// checking every string and raw value again (it trusts a `&str`).
pub fn text(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body)
        .map_err(|e| ApiError::InvalidJson(format!("the body is not UTF-8: {e}")))
}

/// A parse error as the API reports it: `invalid_json` for syntax, `invalid_request` for
/// a body of the wrong shape.
pub fn json_error(e: serde_json::Error) -> ApiError {
    if e.is_syntax() || e.is_eof() {
        ApiError::InvalidJson(e.to_string())
    } else {
        ApiError::InvalidRequest(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
    }
}
