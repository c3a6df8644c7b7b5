//! The files herald serves to browsers, embedded in the binary: the client library
//! (`GET /herald.js`) and the demo page (`GET /`, with `--demo`).
//!
//! Both carry an `ETag` (a hash of their bytes) so a browser revalidates with
//! `If-None-Match` and gets an empty `304` while the binary has not changed.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::ApiError;

/// One embedded file and how to serve it.
pub struct Asset {
    /// The bytes, from `clients/js/` at build time.
    body: &'static [u8],
    /// `Content-Type`.
    content_type: &'static str,
    /// `Cache-Control`.
    cache_control: &'static str,
    /// The ETag, computed on first use.
    etag: OnceLock<HeaderValue>,
}

/// `clients/js/herald.js`. Pages may keep it five minutes, then revalidate: a herald
/// upgrade reaches them within that time, and a revalidation costs a `304`.
pub static HERALD_JS: Asset = Asset::new(
    include_bytes!("../../clients/js/herald.js"),
    "text/javascript; charset=utf-8",
    "public, max-age=300",
);

/// `clients/js/demo.html`: always revalidated, so it stays in step with `herald.js`.
pub static DEMO_PAGE: Asset = Asset::new(
    include_bytes!("../../clients/js/demo.html"),
    "text/html; charset=utf-8",
    "no-cache",
);

impl Asset {
    const fn new(
        body: &'static [u8],
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Self {
        Self {
            body,
            content_type,
            cache_control,
            etag: OnceLock::new(),
        }
    }

    /// A strong ETag that changes whenever the bytes do. It only has to be stable for
    /// one binary, so std's SipHash (fixed keys) over the bytes and length is enough.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.body.hash(&mut hasher);
            let tag = format!("\"{:016x}-{:x}\"", hasher.finish(), self.body.len());
            HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
        })
    }

    /// `200` with the file, or `304` when `if_none_match` names its current ETag.
    pub fn reply(&self, if_none_match: Option<&str>) -> Response {
        let etag = self.etag();
        let fresh = if_none_match.is_some_and(|v| matches_etag(v, etag.as_bytes()));
        let mut res = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut res = self.body.into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            res
        };
        let headers = res.headers_mut();
        headers.insert(header::ETAG, etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(self.cache_control),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        res
    }
}

/// Whether an `If-None-Match` value (`*` or a list of entity tags, weak or strong)
/// names `etag`. RFC 9110 §13.1.2 compares weakly here, so `W/"x"` matches `"x"`.
fn matches_etag(if_none_match: &str, etag: &[u8]) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == etag)
}

/// `GET /herald.js`.
pub async fn herald_js(if_none_match: Option<String>) -> Result<Response, ApiError> {
    Ok(HERALD_JS.reply(if_none_match.as_deref()))
}

/// `GET /`: the demo page (routed only with `--demo`).
pub async fn demo_page(if_none_match: Option<String>) -> Result<Response, ApiError> {
    Ok(DEMO_PAGE.reply(if_none_match.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let tag = br#""abc-1""#;
        assert!(matches_etag(r#""abc-1""#, tag));
        assert!(matches_etag(r#""zzz", W/"abc-1""#, tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag(r#""abc-2""#, tag));
        assert!(!matches_etag("abc-1", tag));
        assert!(!matches_etag("", tag));
    }

    #[test]
    fn etag_is_quoted_and_differs_between_files() {
        let js = HERALD_JS.etag().to_str().unwrap_or_default().to_owned();
        let page = DEMO_PAGE.etag().to_str().unwrap_or_default().to_owned();
        assert!(js.starts_with('"') && js.ends_with('"'), "{js}");
        assert_ne!(js, page);
    }
}
