//! What every log line of a connection carries besides its id, user and peer address: the
//! route and id of the request that opened it.
//!
//! Kept as plain values rather than as open spans: the subscriber's registry keeps every
//! open span (a slot, a map and the span's formatted text), and a connection held two
//! (its own and, as its parent, the upgrade request's) for its whole life. The session
//! makes them afresh when it does something that may log (a client frame, closing) and
//! drops them when it goes idle; the lines come out the same.
//!
//! The request id is usually one herald made up (32 lowercase hex digits, see
//! [`crate::id`]): kept as its 16 bytes, in place, rather than as a string on the heap (a
//! 48-byte allocation for every idle connection). Any other id is kept as it came.

use warp::http::HeaderValue;

/// The upgrade request's id and route, for the connection's log lines.
pub struct LogContext(RequestId);

/// A request id as compact as it can be kept, each with the route's flag: `/ws/{group}`
/// rather than `/ws` (in the variants, not beside the enum, where it would take 8 bytes
/// more of every idle task).
enum RequestId {
    /// 32 lowercase hex digits, as bytes.
    Hex([u8; crate::id::LEN / 2], bool),
    /// Any other id (empty: none).
    Text(Box<str>, bool),
}

impl LogContext {
    /// The context of a connection upgraded by the request `request_id`, on `/ws/{group}`
    /// when `with_group`, else `/ws`.
    pub fn new(request_id: Option<&HeaderValue>, with_group: bool) -> Self {
        let text = request_id
            .and_then(|id| id.to_str().ok())
            .unwrap_or_default();
        Self(match crate::id::pack(text) {
            Some(bytes) => RequestId::Hex(bytes, with_group),
            None => RequestId::Text(Box::from(text), with_group),
        })
    }

    /// The request id, written into `buf` when it is kept as bytes; `None` without one.
    pub fn request_id<'a>(&'a self, buf: &'a mut [u8; crate::id::LEN]) -> Option<&'a str> {
        match &self.0 {
            RequestId::Hex(bytes, _) => {
                *buf = crate::id::spell(bytes);
                std::str::from_utf8(buf).ok()
            }
            RequestId::Text(text, _) if text.is_empty() => None,
            RequestId::Text(text, _) => Some(text),
        }
    }

    /// The upgrade request's route template.
    pub fn route(&self) -> &'static str {
        let (RequestId::Hex(_, with_group) | RequestId::Text(_, with_group)) = self.0;
        if with_group {
            "/ws/{group}"
        } else {
            "/ws"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(text: &str) -> Option<String> {
        let value = HeaderValue::from_str(text).unwrap();
        let log = LogContext::new(Some(&value), false);
        let mut buf = [0; crate::id::LEN];
        log.request_id(&mut buf).map(str::to_owned)
    }

    #[test]
    fn request_ids_print_as_they_came() {
        let made = String::from_utf8(crate::id::next().to_vec()).unwrap();
        assert_eq!(id_of(&made).as_deref(), Some(made.as_str()));
        assert!(matches!(
            LogContext::new(Some(&HeaderValue::from_str(&made).unwrap()), false).0,
            RequestId::Hex(..)
        ));
        let upper = made.to_uppercase();
        for text in ["abc", "loud-1", &upper, "0123456789abcdef0123456789abcdeg"] {
            assert_eq!(id_of(text).as_deref(), Some(text));
        }
        let mut buf = [0; crate::id::LEN];
        assert_eq!(LogContext::new(None, true).request_id(&mut buf), None);
        assert_eq!(LogContext::new(None, true).route(), "/ws/{group}");
    }

    /// The context is in every idle session task, whose size is at a step (see
    /// `session`): the id's bytes and the route's flag share the enum's 24 bytes.
    #[test]
    fn the_context_takes_24_bytes() {
        assert!(std::mem::size_of::<LogContext>() <= 24);
    }
}
