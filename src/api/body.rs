//! The JSON body filter: content type, size limit and parsing, before any handler runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::future::Either;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use warp::http::header::CONTENT_TYPE;
use warp::http::{HeaderMap, HeaderName};
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
                let read = async {
                    let capacity = check_head(content_type.as_deref(), length, limit)?;
                    read(body, capacity, limit).await
                };
                tokio::time::timeout(within, read)
                    .await
                    .unwrap_or(Err(ApiError::BodyTimeout))
                    .map_err(warp::reject::custom)
            },
        )
}

/// [`json_body`] for a request answered outside warp's filters (`transport::hot`): the
/// same checks, limits and errors, on its headers and body. The declared length is the
/// body's exact size hint, which hyper takes from `Content-Length`.
///
/// Polled by hand rather than through `read` and `tokio::time::timeout`: their nested
/// futures (a timer included) are about 1.3 KiB, which every future awaiting this one
/// carries and copies, for a body that is usually in hyper's buffer at the first poll.
/// The timer is only made, boxed, when the body is not all there at the first poll; its
/// `within` counts from then, which is when this future was first polled.
pub fn json_request_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: BodyLimit,
    within: Duration,
) -> impl Future<Output = Result<Bytes, ApiError>>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let head = (|| {
        // The usual value, compared as bytes: no need to check it is text first.
        let content_type = match headers.get(CONTENT_TYPE) {
            Some(v) if v.as_bytes() == b"application/json" => Some("application/json"),
            _ => header_text(headers, CONTENT_TYPE)?,
        };
        // hyper has read `Content-Length` already (refusing a malformed one with 400);
        // the body's exact size is that length, and unknown for a chunked body.
        let length = body.size_hint().exact();
        check_head(content_type, length, limit)
    })();
    let capacity = match head {
        Ok(capacity) => capacity,
        Err(e) => return Either::Left(std::future::ready(Err(e))),
    };
    let mut body = body;
    let mut gathered = Gather::new(capacity, limit);
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    Either::Right(std::future::poll_fn(move |cx| {
        loop {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if let Err(e) = gathered.push(data) {
                            return Poll::Ready(Err(e));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(unreadable(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(gathered.finish())),
                Poll::Pending => break,
            }
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(within)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(ApiError::BodyTimeout))
    }))
}

/// A header's value as text. Like warp's header filters, a value that is not visible
/// ASCII is a 400 rather than an absent header.
fn header_text(headers: &HeaderMap, name: HeaderName) -> Result<Option<&str>, ApiError> {
    headers
        .get(&name)
        .map(|v| v.to_str().map_err(|_| invalid_header(name)))
        .transpose()
}

/// The error warp's header filters give for an unreadable header.
fn invalid_header(name: HeaderName) -> ApiError {
    ApiError::InvalidHeader(format!("Invalid request header {:?}", name.as_str()))
}

/// The checks on a body's headers, before any of it is read: `application/json` (415)
/// and a declared length within `limit` (413). Returns the capacity to read it into.
fn check_head(
    content_type: Option<&str>,
    length: Option<u64>,
    limit: BodyLimit,
) -> Result<usize, ApiError> {
    if !content_type.is_some_and(is_json) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if length.is_some_and(|l| l > u64::from(limit.bytes)) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(length.map_or(1024, |l| l as usize))
}

/// Reads the body into one buffer, refusing it (413) as soon as it passes `limit`.
async fn read<S, B, E>(body: S, capacity: usize, limit: BodyLimit) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, E>>,
    B: Buf,
    E: std::fmt::Display,
{
    let mut gathered = Gather::new(capacity, limit);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        gathered.push(chunk.map_err(unreadable)?)?;
    }
    Ok(gathered.finish())
}

/// The 400 for a body that could not be read.
fn unreadable(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(format!("could not read the body: {e}"))
}

/// A body's chunks gathered into one buffer, refused (413) as soon as they pass `limit`.
///
/// A body that arrives as one chunk (the usual case for a small body) is that chunk,
/// shared rather than copied; only a body in several chunks is gathered into a new
/// buffer of `capacity`.
struct Gather {
    first: Option<Bytes>,
    out: BytesMut,
    capacity: usize,
    limit: BodyLimit,
}

impl Gather {
    fn new(capacity: usize, limit: BodyLimit) -> Self {
        Self {
            first: None,
            out: BytesMut::new(),
            capacity,
            limit,
        }
    }

    /// Adds the next chunk.
    fn push(&mut self, mut chunk: impl Buf) -> Result<(), ApiError> {
        let so_far = self.first.as_ref().map_or(self.out.len(), Bytes::len);
        if so_far + chunk.remaining() > self.limit.bytes as usize {
            return Err(ApiError::PayloadTooLarge(self.limit));
        }
        if self.first.is_none() && self.out.is_empty() {
            // `Bytes` hands itself over without a copy.
            self.first = Some(chunk.copy_to_bytes(chunk.remaining()));
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            self.out
                .reserve(self.capacity.max(first.len() + chunk.remaining()));
            self.out.extend_from_slice(&first);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            self.out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
        Ok(())
    }

    /// The whole body.
    fn finish(&mut self) -> Bytes {
        self.first
            .take()
            .unwrap_or_else(|| std::mem::take(&mut self.out).freeze())
    }
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(content_type: &str) -> bool {
    if content_type == "application/json" {
        // The usual value, without the general steps below.
        return true;
    }
    // Parameters after `;`, and the whitespace around the type, do not matter (header
    // values are visible ASCII here, so ASCII trimming is the whole job).
    let essence = match content_type.split_once(';') {
        Some((essence, _)) => essence,
        None => content_type,
    };
    essence
        .trim_ascii()
        .eq_ignore_ascii_case("application/json")
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

    async fn read_chunks(chunks: &[&'static str], limit: u32) -> Result<Bytes, ApiError> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        read(
            futures_util::stream::iter(chunks),
            4,
            BodyLimit::body(limit),
        )
        .await
    }

    #[tokio::test]
    async fn bodies_in_one_or_many_chunks_read_whole_within_the_limit() {
        assert_eq!(read_chunks(&[], 10).await.unwrap(), "");
        assert_eq!(read_chunks(&["{}"], 10).await.unwrap(), "{}");
        assert_eq!(
            read_chunks(&["{\"a\"", ":", "1234}"], 10).await.unwrap(),
            "{\"a\":1234}"
        );
        for chunks in [
            &["0123456789x"][..],
            &["01234", "56789", "x"],
            &["0123456789", "x"],
        ] {
            let err = read_chunks(chunks, 10).await.unwrap_err();
            assert!(
                matches!(err, ApiError::PayloadTooLarge(_)),
                "{chunks:?}: {err}"
            );
        }
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(is_json(" application/json ;charset=utf-8"));
        assert!(!is_json(";application/json"));
    }
}
