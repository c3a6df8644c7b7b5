//! The public wire contract: WebSocket frames ([`frame`], encoded by [`wire`]), HTTP
//! bodies ([`http`]), names ([`name`]) and close codes ([`close`]).
//!
//! Change a field here and change `openapi.yaml` and the README in the same commit.

pub mod close;
pub mod epoch;
pub mod frame;
pub mod http;
pub mod name;
pub mod publication;
pub mod reply;
pub mod wire;

pub use close::{Close, CloseCode};
pub use epoch::{Epoch, InvalidEpoch, Position, Resume};
pub use frame::{ClientFrame, FrameError, ServerFrame};
pub use http::{
    CloseRequest, Closed, GroupInfo, GroupList, GroupSummary, NotifyBatchRequest, NotifyRequest,
    Text,
};
pub use name::{EventName, GroupName, InvalidName, InvalidUserId, UserId};
pub use publication::{Data, Publication};
pub use reply::Accepted;
pub use wire::encode_notify;

/// A group's position: the offset of the last notification sent to it (0 = none yet).
pub type Offset = u64;

/// The largest offset a client or backend may name as `since` (2^53 − 1): past it a JSON
/// number is no longer exact in JavaScript, so no real offset gets there.
pub const MAX_SINCE: Offset = (1 << 53) - 1;

/// Whether `json` starts like a JSON object (after optional whitespace). serde's derived
/// structs also read arrays, by position; herald's bodies and frames are objects only.
pub fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_told_from_other_json() {
        assert!(is_json_object(b" \n{}"));
        assert!(!is_json_object(b"[1]") && !is_json_object(b"") && !is_json_object(b"null"));
    }
}
