//! The HTTP API's request and reply bodies (`openapi.yaml` `components/schemas`).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Offset, UserId};

// The replies of `POST /notify` and `POST /notify/batch` are written by `super::reply`.

/// A string field of a request body, borrowed from the body unless it contains escapes
/// (then unescaped into its own allocation).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

/// Body of `POST /notify`, and each item of `POST /notify/batch`. Borrows from the
/// request body (`data` always, names when unescaped), which the handler holds until it
/// has answered: nothing is copied out of it before publishing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest<'a> {
    /// One target group. Exactly one of `group` and `groups` is given.
    #[serde(borrow)]
    pub group: Option<Text<'a>>,
    /// Several target groups that all receive the same event.
    #[serde(borrow)]
    pub groups: Option<Vec<Text<'a>>>,
    /// Event type; `"message"` when absent.
    #[serde(borrow)]
    pub event: Option<Text<'a>>,
    /// Only connections of these users (their token's `sub`) receive it.
    #[serde(borrow)]
    pub users: Option<Vec<Text<'a>>>,
    /// Any JSON value, forwarded verbatim to every member.
    #[serde(borrow)]
    pub data: &'a RawValue,
}

/// Body of `POST /notify/batch`: each item is exactly a [`NotifyRequest`] body. Items
/// are kept as raw JSON here (borrowed), so each is checked on its own and an error names
/// its index.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBatchRequest<'a> {
    /// The notifications, in the order they are published.
    #[serde(borrow)]
    pub notifications: Vec<&'a RawValue>,
}

/// Body of `POST /groups/{group}/close` and `POST /users/{user}/close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// Close code: 1000 or 3000–4999. Defaults to 1000. A whole number written with a
    /// fraction (`4000.0`) is accepted, as JSON Schema's `integer` allows.
    #[serde(default = "default_close_code", deserialize_with = "whole_number")]
    pub code: u64,
    /// Close reason, at most 123 bytes of UTF-8.
    #[serde(default)]
    pub reason: String,
}

fn default_close_code() -> u64 {
    1000
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    // Out-of-range whole numbers parse as they are, so validation can name the code the
    // client sent; only those past u64 (written as huge floats) are refused here.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..LIMIT).contains(f))
            .map(|f| f as u64)
    });
    whole.ok_or_else(|| {
        D::Error::custom(format!(
            "close code must be a whole number, 1000 or 3000-4999; got {n}"
        ))
    })
}

/// Reply to `POST /groups/{group}/close` and `POST /users/{user}/close`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Closed {
    /// Connections that were closed (on every node that answered, with Redis).
    pub closed: usize,
}

/// One entry of `GET /groups`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group.
    pub group: String,
    /// Its members (on every node, with Redis).
    pub subscribers: usize,
}

/// Reply to `GET /groups`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupList {
    /// Groups with members (on any node, with Redis), by name, up to the requested limit.
    pub groups: Vec<GroupSummary>,
    /// How many such groups there are in all.
    pub total: usize,
}

/// Reply to `GET /groups/{group}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupInfo {
    /// The group.
    pub group: String,
    /// Its members (on every node, with Redis).
    pub subscribers: usize,
    /// The offset of its latest notification (0: none yet).
    pub offset: Offset,
    /// Distinct users among its members, up to the requested limit.
    pub users: Vec<UserId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_may_be_written_as_whole_floats() {
        let r: CloseRequest = serde_json::from_str(r#"{"code":3000.0}"#).unwrap();
        assert_eq!(r.code, 3000);
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code":3000.5}"#).is_err());
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code":-1}"#).is_err());
    }

    #[test]
    fn notify_request_keeps_null_data_and_requires_the_field() {
        let r: NotifyRequest = serde_json::from_str(r#"{"group":"g","data":null}"#).unwrap();
        assert_eq!(r.data.get(), "null");
        let err = serde_json::from_str::<NotifyRequest>(r#"{"group":"g"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
    }
}
