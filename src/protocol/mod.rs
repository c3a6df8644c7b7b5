//! The public wire contract: WebSocket frames and HTTP bodies.
//!
//! Change a field here and change `openapi.yaml` and the README in the same commit.

pub mod close;
pub mod frame;
pub mod name;
pub mod wire;

pub use close::CloseCode;
pub use frame::{ClientFrame, FrameError, ServerFrame};
pub use name::{EventName, GroupName, InvalidName, InvalidUserId, UserId};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A group's position: the offset of the last notification sent to it (0 = none yet).
pub type Offset = u64;

/// Body of `POST /notify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// One target group. Exactly one of `group` and `groups` is given.
    pub group: Option<String>,
    /// Several target groups that all receive the same event.
    pub groups: Option<Vec<String>>,
    /// Event type; `"message"` when absent.
    pub event: Option<String>,
    /// Only connections of these users (their token's `sub`) receive it.
    pub users: Option<Vec<String>>,
    /// Any JSON value, forwarded verbatim to every member.
    pub data: Box<RawValue>,
}

/// Whether `json` starts like a JSON object (after optional whitespace). serde's derived
/// structs also read arrays, by position; herald's bodies and frames are objects only.
pub fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Reply to `POST /notify` for one group.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupDelivery {
    /// The target group.
    pub group: String,
    /// The offset the notification got in that group.
    pub offset: Offset,
    /// Members of that group on this node that it was handed to.
    pub recipients: usize,
}

/// Reply to `POST /notify`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotifyResponse {
    /// Unique id of this notify request.
    pub id: String,
    /// The notification's offset (single-group form only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<Offset>,
    /// Members reached on this node, summed over all target groups.
    pub recipients: usize,
    /// One entry per target group (`groups` form only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupDelivery>>,
}

/// Body of `POST /notify/batch`: each item is exactly a [`NotifyRequest`] body. Items
/// are kept as raw JSON here, so each is checked on its own and an error names its index.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyBatchRequest<'a> {
    /// The notifications, in the order they are published.
    #[serde(borrow)]
    pub notifications: Vec<&'a RawValue>,
}

/// Reply to `POST /notify/batch`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NotifyBatchResponse {
    /// One `POST /notify` reply per notification, in the order of the request.
    pub results: Vec<NotifyResponse>,
}

/// Body of `POST /groups/{group}/close` and `POST /users/{user}/close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// Close code: 1000 or 3000–4999. Defaults to 1000. A whole number written with a
    /// fraction (`4000.0`) is accepted, as JSON Schema's `integer` allows.
    #[serde(default = "default_close_code", deserialize_with = "whole_number")]
    pub code: u32,
    /// Close reason, at most 123 bytes of UTF-8.
    #[serde(default)]
    pub reason: String,
}

fn default_close_code() -> u32 {
    1000
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
            .map(|f| f as u64)
    });
    // Out-of-range codes still parse (saturated) so validation can explain the code rule.
    whole
        .map(|w| u32::try_from(w).unwrap_or(u32::MAX))
        .ok_or_else(|| D::Error::custom(format!("close code must be a whole number, got {n}")))
}

/// Builds the notification frame members receive, as a complete WebSocket frame.
/// Called once per notification; every recipient shares the result.
///
/// Group and event names are validated to characters that need no JSON escaping, and
/// `data` is already valid JSON, so the frame is assembled without re-serialising `data`.
pub fn encode_notify(
    group: &GroupName,
    event: &EventName,
    offset: Offset,
    data: &RawValue,
) -> Bytes {
    let data = data.get();
    let hint = 64 + group.as_str().len() + event.as_str().len() + data.len();
    wire::text_frame(hint, |out| {
        out.extend_from_slice(br#"{"type":"notify","group":""#);
        out.extend_from_slice(group.as_str().as_bytes());
        out.extend_from_slice(br#"","event":""#);
        out.extend_from_slice(event.as_str().as_bytes());
        out.extend_from_slice(br#"","offset":"#);
        out.extend_from_slice(offset.to_string().as_bytes());
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(data.as_bytes());
        out.push(b'}');
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_frame_is_the_documented_json() {
        let data = RawValue::from_string(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap();
        let frame = encode_notify(
            &GroupName::parse("room:1").unwrap(),
            &EventName::parse("chat.message").unwrap(),
            17,
            &data,
        );
        // Skip the 2-byte header of this short frame.
        let v: serde_json::Value = serde_json::from_slice(&frame[2..]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"notify","group":"room:1","event":"chat.message","offset":17,"data":{"text":"hi","n":[1,2]}})
        );
    }

    #[test]
    fn close_codes_may_be_written_as_whole_floats() {
        let r: CloseRequest = serde_json::from_str(r#"{"code":3000.0}"#).unwrap();
        assert_eq!(r.code, 3000);
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code":3000.5}"#).is_err());
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code":-1}"#).is_err());
    }

    #[test]
    fn objects_are_told_from_other_json() {
        assert!(is_json_object(b" \n{}"));
        assert!(!is_json_object(b"[1]") && !is_json_object(b"") && !is_json_object(b"null"));
    }

    #[test]
    fn notify_request_keeps_null_data_and_requires_the_field() {
        let r: NotifyRequest = serde_json::from_str(r#"{"group":"g","data":null}"#).unwrap();
        assert_eq!(r.data.get(), "null");
        let err = serde_json::from_str::<NotifyRequest>(r#"{"group":"g"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
    }
}
