//! Every close code herald sends, in one table. The README's close-code table and the
//! `CloseCode` schema in `openapi.yaml` mirror [`TABLE`]; a test keeps them in step.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A close herald asks a connection to send: code and reason, in herald's own terms so the
/// hub and the brokers (which carry group and user closes between nodes) never depend on
/// the WebSocket library. The transport turns it into the wire frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    /// The close code (herald's own from [`TABLE`], or 1000 / 3000–4999 from the API).
    pub code: u16,
    /// The close reason, at most [`MAX_REASON_BYTES`] bytes of UTF-8. Shared: a group
    /// close hands the same reason to every member.
    pub reason: Arc<str>,
}

/// A WebSocket close code herald sends, with its meaning for clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    /// The numeric code on the wire.
    pub code: u16,
    /// Short machine name, also used as the close reason.
    pub name: &'static str,
    /// Whether a client should reconnect (with backoff) after seeing it.
    pub reconnect: bool,
    /// When herald sends it, for the documentation.
    pub when: &'static str,
}

impl CloseCode {
    /// Client closed normally, or herald answers a client's close.
    pub const NORMAL: Self = Self::new(
        1000,
        "normal",
        false,
        "the client closed the connection; herald echoes its close",
    );
    /// The client sent a binary frame; herald only speaks JSON text frames.
    pub const UNSUPPORTED_DATA: Self = Self::new(
        1003,
        "binary_frame",
        false,
        "the client sent a binary frame (herald speaks JSON text frames only)",
    );
    /// The client sent a text frame that is not valid UTF-8.
    pub const INVALID_PAYLOAD: Self = Self::new(
        1007,
        "invalid_utf8",
        false,
        "the client sent a text frame that is not valid UTF-8",
    );
    /// The client sent a frame larger than `--max-frame`.
    pub const MESSAGE_TOO_BIG: Self = Self::new(
        1009,
        "frame_too_large",
        false,
        "the client sent a frame larger than --max-frame",
    );
    /// The client broke the WebSocket protocol (bad framing, unmasked frame, ...).
    pub const PROTOCOL_ERROR: Self = Self::new(
        1002,
        "protocol_error",
        false,
        "the client broke RFC 6455 framing",
    );
    /// herald is shutting down or restarting; reconnect (to another node).
    pub const SERVICE_RESTART: Self = Self::new(
        1012,
        "service_restart",
        true,
        "herald is shutting down (SIGTERM/SIGINT); reconnect, another node will take you",
    );
    /// The connection's outbound queue overflowed because the client read too slowly.
    pub const SLOW_CONSUMER: Self = Self::new(
        4100,
        "slow_consumer",
        true,
        "the client read too slowly and its outbound queue (--send-queue) filled up; reconnect",
    );
    /// The client answered no ping within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: Self = Self::new(
        4101,
        "heartbeat_timeout",
        true,
        "no frame (not even a pong) arrived within --ping-interval + --ping-timeout; reconnect",
    );

    /// The token's `exp` (plus `--jwt-leeway`) passed without a `refresh`.
    pub const TOKEN_EXPIRED: Self = Self::new(
        4102,
        "token_expired",
        true,
        "the connection's token expired (exp + --jwt-leeway) and no refresh frame replaced it; get a new token and reconnect",
    );

    const fn new(code: u16, name: &'static str, reconnect: bool, when: &'static str) -> Self {
        Self {
            code,
            name,
            reconnect,
            when,
        }
    }

    /// The close herald sends for this code, with its name as the reason.
    pub fn frame(self) -> Close {
        Close {
            code: self.code,
            reason: self.name.into(),
        }
    }
}

/// Every code herald itself sends. API callers add their own codes with group close.
pub const TABLE: &[CloseCode] = &[
    CloseCode::NORMAL,
    CloseCode::PROTOCOL_ERROR,
    CloseCode::UNSUPPORTED_DATA,
    CloseCode::INVALID_PAYLOAD,
    CloseCode::MESSAGE_TOO_BIG,
    CloseCode::SERVICE_RESTART,
    CloseCode::SLOW_CONSUMER,
    CloseCode::HEARTBEAT_TIMEOUT,
    CloseCode::TOKEN_EXPIRED,
];

/// Longest close reason: a close frame's payload is at most 125 bytes, 2 of them the code.
pub const MAX_REASON_BYTES: usize = 123;

/// Why an application close request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidClose {
    /// The code is outside 1000 and 3000–4999.
    #[error("close code {0} is not an application close code: use 1000 or 3000-4999 (RFC 6455 reserves 1001-2999 for the protocol and 5000+ is undefined)")]
    Code(u64),
    /// The reason does not fit in a close frame.
    #[error("close reason is {0} bytes of UTF-8; at most 123 fit in a close frame")]
    Reason(usize),
}

/// Validates a close requested through the API (group close, user close).
pub fn application_close(code: u64, reason: &str) -> Result<Close, InvalidClose> {
    if !(code == 1000 || (3000..=4999).contains(&code)) {
        return Err(InvalidClose::Code(code));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(InvalidClose::Reason(reason.len()));
    }
    // The range check above makes the narrowing exact.
    let code = u16::try_from(code).map_err(|_| InvalidClose::Code(code))?;
    Ok(Close {
        code,
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_codes_are_1000_and_3000_to_4999() {
        for ok in [1000, 3000, 4000, 4321, 4999] {
            assert!(application_close(ok, "").is_ok(), "{ok}");
        }
        for bad in [0, 999, 1001, 1234, 1012, 2999, 5000, 70000, 4_294_967_296] {
            assert_eq!(application_close(bad, ""), Err(InvalidClose::Code(bad)));
        }
    }

    #[test]
    fn reason_is_limited_to_123_bytes() {
        assert!(application_close(4000, &"r".repeat(123)).is_ok());
        assert_eq!(
            application_close(4000, &"r".repeat(124)),
            Err(InvalidClose::Reason(124))
        );
        // Bytes, not characters: 62 two-byte characters are 124 bytes.
        assert_eq!(
            application_close(4000, &"é".repeat(62)),
            Err(InvalidClose::Reason(124))
        );
    }

    #[test]
    fn herald_codes_are_unique_and_legal() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|b| b.code != a.code),
                "{} twice",
                a.code
            );
            assert!(a.name.len() <= MAX_REASON_BYTES);
        }
    }
}
