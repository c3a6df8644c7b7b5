//! The public wire contract: WebSocket frames and HTTP bodies.
//!
//! Change a field here and change `openapi.yaml` and the README in the same commit.

pub mod close;
pub mod frame;
pub mod name;

pub use close::CloseCode;
pub use frame::{ClientFrame, FrameError, ServerFrame};
pub use name::{EventName, GroupName, InvalidName};

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
    /// Any JSON value, forwarded verbatim to every member.
    pub data: Box<RawValue>,
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

/// Body of `POST /groups/{group}/close`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    /// Close code: 1000 or 3000–4999. Defaults to 1000.
    #[serde(default = "default_close_code")]
    pub code: u32,
    /// Close reason, at most 123 bytes of UTF-8.
    #[serde(default)]
    pub reason: String,
}

fn default_close_code() -> u32 {
    1000
}

/// Writes the notification frame members receive. Called once per notification; the
/// result is shared by every recipient.
///
/// Group and event names are validated to characters that need no JSON escaping, and
/// `data` is already valid JSON, so the frame is assembled without re-serialising `data`.
pub fn encode_notify(
    group: &GroupName,
    event: &EventName,
    offset: Offset,
    data: &RawValue,
) -> String {
    let data = data.get();
    let mut out =
        String::with_capacity(64 + group.as_str().len() + event.as_str().len() + data.len());
    out.push_str(r#"{"type":"notify","group":""#);
    out.push_str(group.as_str());
    out.push_str(r#"","event":""#);
    out.push_str(event.as_str());
    out.push_str(r#"","offset":"#);
    out.push_str(&offset.to_string());
    out.push_str(r#","data":"#);
    out.push_str(data);
    out.push('}');
    out
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
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"notify","group":"room:1","event":"chat.message","offset":17,"data":{"text":"hi","n":[1,2]}})
        );
    }

    #[test]
    fn notify_request_keeps_null_data_and_requires_the_field() {
        let r: NotifyRequest = serde_json::from_str(r#"{"group":"g","data":null}"#).unwrap();
        assert_eq!(r.data.get(), "null");
        let err = serde_json::from_str::<NotifyRequest>(r#"{"group":"g"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `data`"), "{err}");
    }
}
