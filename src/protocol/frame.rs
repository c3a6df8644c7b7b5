//! JSON text frames exchanged on a WebSocket.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Epoch, Offset};

/// A frame a client sends (`{"type": ...}`).
#[derive(Debug)]
pub enum ClientFrame {
    /// Join a group (`group_add`).
    Subscribe {
        /// The group to join.
        group: String,
        /// Resume: the offset of the last notification the client saw in this group.
        since: Option<Offset>,
        /// Resume: the epoch that offset belongs to.
        epoch: Option<String>,
    },
    /// Leave a group (`group_discard`).
    Unsubscribe {
        /// The group to leave.
        group: String,
    },
    /// Application-level keepalive; answered with `pong`.
    Ping,
    /// Replace the connection's token before it expires.
    Refresh {
        /// The new token; it must have the same `sub`.
        token: String,
    },
    /// Send a notification to a group this connection is a member of (needs `--client-publish`).
    Publish {
        /// Target group.
        group: String,
        /// Event type, `"message"` when absent.
        event: Option<String>,
        /// Any JSON value.
        data: Box<RawValue>,
    },
}

/// Every field any client frame may carry. serde cannot put a `RawValue` inside an
/// internally tagged enum, so frames are read flat and checked per type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: String,
    group: Option<String>,
    event: Option<String>,
    /// `Some` whenever the field is present, even as `null` (any JSON value is data).
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    token: Option<String>,
    since: Option<Offset>,
    epoch: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The frame types a client may send, for error messages.
const CLIENT_TYPES: &[&str] = &["subscribe", "unsubscribe", "ping", "publish", "refresh"];

/// A frame herald sends in reply to a client frame. Notifications are not built here:
/// see [`super::wire::encode_notify`], which avoids re-serialising their payload.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The connection joined `group`; notifications after `offset` will follow (after
    /// the replayed ones when a resume was recovered).
    Subscribed {
        /// The group joined.
        group: String,
        /// The group's latest offset at the moment of joining.
        offset: Offset,
        /// The epoch `offset` belongs to.
        epoch: Epoch,
        /// Only for a resume (`since` given): whether every notification after `since`
        /// follows. `false`: the gap cannot be filled; reload state, live ones follow.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// The connection left `group`.
    Unsubscribed {
        /// The group left.
        group: String,
    },
    /// Answer to `ping`.
    Pong,
    /// The `refresh` token was accepted; the connection now expires at `exp`.
    Refreshed {
        /// The new token's `exp`, in seconds since the Unix epoch.
        exp: u64,
    },
    /// A client frame was refused; the connection stays open.
    Error {
        /// Machine-readable code (`invalid_json`, `unknown_type`, ...).
        error: String,
        /// Human-readable explanation.
        message: String,
    },
}

/// Why a client frame was refused. Each maps to an `error` frame; none closes the socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON without a known `type`.
    #[error(
        "unknown frame type {0:?}: expected one of subscribe, unsubscribe, ping, publish, refresh"
    )]
    UnknownType(String),
    /// A known type with missing, extra or mistyped fields.
    #[error("{0}")]
    InvalidFrame(String),
    /// A group name that breaks the naming rule.
    #[error("{0}")]
    InvalidGroup(String),
    /// An event name that breaks the naming rule.
    #[error("{0}")]
    InvalidEvent(String),
    /// Subscribing past `--max-subscriptions`.
    #[error("this connection is already in {0} groups, the most allowed (--max-subscriptions)")]
    TooManySubscriptions(usize),
    /// Publishing to a group the connection is not a member of.
    #[error("subscribe to {0:?} before publishing to it")]
    NotSubscribed(String),
    /// The token does not allow this group.
    #[error("{0}")]
    Forbidden(String),
    /// A `refresh` token that does not verify.
    #[error("{0}")]
    InvalidToken(String),
    /// A `refresh` on a hub that checks no tokens.
    #[error("this hub checks no tokens (no key is configured), so there is nothing to refresh")]
    AuthDisabled,
    /// Client publish is disabled on this hub.
    #[error("client publish is disabled on this hub (--client-publish)")]
    PublishDisabled,
    /// The broker could not take the publication.
    #[error("the notification could not be published, try again")]
    Unavailable,
}

impl FrameError {
    /// The `error` field of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::UnknownType(_) => "unknown_type",
            Self::InvalidFrame(_) => "invalid_frame",
            Self::InvalidGroup(_) => "invalid_group",
            Self::InvalidEvent(_) => "invalid_event",
            Self::TooManySubscriptions(_) => "too_many_subscriptions",
            Self::NotSubscribed(_) => "not_subscribed",
            Self::PublishDisabled => "publish_disabled",
            Self::Forbidden(_) => "forbidden",
            Self::InvalidToken(_) => "invalid_token",
            Self::AuthDisabled => "auth_disabled",
            Self::Unavailable => "unavailable",
        }
    }

    /// The error frame sent to the client.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::Error {
            error: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl ClientFrame {
    /// Parses a text frame, telling malformed JSON, unknown types and bad fields apart.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        // serde's derived structs would also read an array by position: refuse it first.
        if !super::is_json_object(text.as_bytes()) {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Err(e) => FrameError::InvalidJson(e.to_string()),
                Ok(_) => FrameError::InvalidFrame("a frame must be a JSON object".into()),
            });
        }
        let raw: RawFrame = serde_json::from_str(text).map_err(|e| classify(text, e))?;
        let kind = raw.kind.as_str();
        let invalid =
            |what: &str| FrameError::InvalidFrame(format!("invalid {kind} frame: {what}"));
        let group = |g: Option<String>| g.ok_or_else(|| invalid("missing field `group`"));
        if kind != "refresh" && raw.token.is_some() {
            return Err(invalid("only `refresh` frames carry `token`"));
        }
        if kind != "subscribe" && (raw.since.is_some() || raw.epoch.is_some()) {
            return Err(invalid("only `subscribe` frames carry `since` and `epoch`"));
        }
        if raw.epoch.is_some() && raw.since.is_none() {
            return Err(invalid("`epoch` is only sent with `since`"));
        }
        match kind {
            "subscribe" | "unsubscribe" | "ping" | "refresh"
                if raw.event.is_some() || raw.data.is_some() =>
            {
                Err(invalid("only `publish` frames carry `event` and `data`"))
            }
            "refresh" if raw.group.is_some() => Err(invalid("unexpected field `group`")),
            "refresh" => Ok(Self::Refresh {
                token: raw.token.ok_or_else(|| invalid("missing field `token`"))?,
            }),
            "ping" if raw.group.is_some() => Err(invalid("unexpected field `group`")),
            "ping" => Ok(Self::Ping),
            "subscribe" => Ok(Self::Subscribe {
                group: group(raw.group)?,
                since: raw.since,
                epoch: raw.epoch,
            }),
            "unsubscribe" => Ok(Self::Unsubscribe {
                group: group(raw.group)?,
            }),
            "publish" => {
                let data = raw.data.ok_or_else(|| invalid("missing field `data`"))?;
                Ok(Self::Publish {
                    group: group(raw.group)?,
                    event: raw.event,
                    data,
                })
            }
            other => Err(FrameError::UnknownType(other.to_owned())),
        }
    }
}

/// Explains why text did not parse as a frame at all.
fn classify(text: &str, e: serde_json::Error) -> FrameError {
    if e.is_syntax() || e.is_eof() {
        return FrameError::InvalidJson(e.to_string());
    }
    let kind = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
    match kind {
        Some(k) if CLIENT_TYPES.contains(&k.as_str()) => {
            FrameError::InvalidFrame(format!("invalid {k} frame: {e}"))
        }
        Some(k) => FrameError::UnknownType(k),
        None => FrameError::UnknownType(String::new()),
    }
}

impl ServerFrame {
    /// Serialises the frame. Server frames hold only strings and integers, so this cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"type":"error","error":"internal","message":"encoding failed"}"#)
        })
    }

    /// The frame as a complete WebSocket text frame, for the outbound queue.
    pub fn to_wire(&self) -> bytes::Bytes {
        let json = self.to_json();
        super::wire::text_frame(json.len(), |out| out.extend_from_slice(json.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_client_frame() {
        assert!(
            matches!(ClientFrame::parse(r#"{"type":"subscribe","group":"g"}"#), Ok(ClientFrame::Subscribe { group, since: None, epoch: None }) if group == "g")
        );
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"subscribe","group":"g","since":17,"epoch":"e"}"#),
            Ok(ClientFrame::Subscribe { since: Some(17), epoch: Some(e), .. }) if e == "e"
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"unsubscribe","group":"g"}"#),
            Ok(ClientFrame::Unsubscribe { .. })
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        ));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"publish","group":"g","data":[1]}"#),
            Ok(ClientFrame::Publish { event: None, .. })
        ));
        assert!(
            matches!(ClientFrame::parse(r#"{"type":"refresh","token":"t"}"#), Ok(ClientFrame::Refresh { token }) if token == "t")
        );
        let null = ClientFrame::parse(r#"{"type":"publish","group":"g","data":null}"#);
        assert!(matches!(null, Ok(ClientFrame::Publish { data, .. }) if data.get() == "null"));
    }

    #[test]
    fn classifies_bad_frames() {
        let code = |t: &str| ClientFrame::parse(t).unwrap_err().code();
        assert_eq!(code("{nope"), "invalid_json");
        assert_eq!(code(""), "invalid_json");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(code(r#"{"group":"g"}"#), "unknown_type");
        assert_eq!(code(r#"[1,2]"#), "invalid_frame");
        assert_eq!(code(r#""subscribe""#), "invalid_frame");
        assert_eq!(code(r#"["subscribe","g",null]"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"subscribe"}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"subscribe","group":7}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"publish","group":"g"}"#), "invalid_frame");
        assert_eq!(
            code(r#"{"type":"subscribe","group":"g","data":1}"#),
            "invalid_frame"
        );
        assert_eq!(code(r#"{"type":"ping","extra":1}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"refresh"}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"ping","token":"t"}"#), "invalid_frame");
        assert_eq!(code(r#"{"type":"ping","since":1}"#), "invalid_frame");
        assert_eq!(
            code(r#"{"type":"subscribe","group":"g","since":-1}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","group":"g","since":1.5}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","group":"g","epoch":"e"}"#),
            "invalid_frame"
        );
        assert_eq!(
            code(r#"{"type":"refresh","token":"t","group":"g"}"#),
            "invalid_frame"
        );
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let epoch = Epoch::parse("e").unwrap();
        let s = ServerFrame::Subscribed {
            group: "g".into(),
            offset: 3,
            epoch: epoch.clone(),
            recovered: None,
        }
        .to_json();
        assert_eq!(
            s,
            r#"{"type":"subscribed","group":"g","offset":3,"epoch":"e"}"#
        );
        let s = ServerFrame::Subscribed {
            group: "g".into(),
            offset: 3,
            epoch,
            recovered: Some(false),
        }
        .to_json();
        assert_eq!(
            s,
            r#"{"type":"subscribed","group":"g","offset":3,"epoch":"e","recovered":false}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerFrame::Refreshed { exp: 9 }.to_json(),
            r#"{"type":"refreshed","exp":9}"#
        );
        let e = FrameError::PublishDisabled.to_frame().to_json();
        assert!(
            e.starts_with(r#"{"type":"error","error":"publish_disabled","message":"#),
            "{e}"
        );
    }
}
