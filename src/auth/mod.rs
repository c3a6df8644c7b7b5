//! Authentication and authorisation: what a bearer token (a JWT) says about its holder,
//! and the pure checks of what that holder may do.
//!
//! No warp and no I/O here after startup: `transport::admission` finds the token in a
//! request and calls [`Verifier::verify`]; sessions and API handlers ask [`Claims`].
//! Signatures and standard claims are checked by `jsonwebtoken`; herald only reads the
//! claims it adds on top (`groups`, `publish`, `scope`).

pub mod bearer;
mod grant;
mod pattern;
mod verifier;

pub use grant::{Denied, Grant, OtherUser};
pub use pattern::{any_matches, has_scope, origin_allowed, InvalidPattern, Pattern};
pub use verifier::{KeyError, Verifier};

use serde::Deserialize;

use crate::protocol::{GroupName, UserId};

/// The scope a backend token needs for the HTTP API (`POST /notify`, closes, views).
pub const NOTIFY_SCOPE: &str = "notify";

/// The claims herald reads from a verified token. `exp` and `sub` are required for every
/// token, subscriber or backend; `iss`/`aud` are checked by the [`Verifier`] when
/// configured.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user (or, for a backend, service) id.
    pub sub: UserId,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Groups a connection with this token may join.
    #[serde(default)]
    pub groups: Vec<Pattern>,
    /// Groups a connection with this token may publish to (with `--client-publish`).
    #[serde(default)]
    pub publish: Vec<Pattern>,
    /// Space-separated OAuth scopes; backends need [`NOTIFY_SCOPE`].
    #[serde(default)]
    pub scope: String,
}

impl Claims {
    /// Whether these claims allow joining `group`.
    pub fn may_join(&self, group: &GroupName) -> bool {
        any_matches(&self.groups, group)
    }

    /// Whether these claims allow publishing to `group` from a WebSocket.
    pub fn may_publish(&self, group: &GroupName) -> bool {
        any_matches(&self.publish, group)
    }

    /// Whether the `scope` claim lists `wanted`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        has_scope(&self.scope, wanted)
    }
}

/// The personal group of `user`: `prefix` + id (`user:42`), which every connection of
/// that user joins. `None` when the prefix is empty (personal groups are off) or the
/// result breaks the group naming rule (an id with characters a group name cannot have,
/// or too long).
pub fn personal_group(prefix: &str, user: &UserId) -> Option<GroupName> {
    if prefix.is_empty() {
        return None;
    }
    GroupName::parse(&format!("{prefix}{user}")).ok()
}

/// Why a request was not authenticated. The message is shown to the caller; it never
/// contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was sent.
    #[error("a bearer token is required: send `Authorization: Bearer <token>`")]
    Missing,
    /// A token was sent more than one way (RFC 6750 §2 allows one per request).
    #[error("send the token one way only (header, subprotocol or query)")]
    Ambiguous,
    /// The token was refused; the text says why.
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_group_needs_a_prefix_and_a_valid_name() {
        let user = |s: &str| UserId::parse(s).unwrap();
        assert_eq!(
            personal_group("user:", &user("42")),
            Some(GroupName::parse("user:42").unwrap())
        );
        assert_eq!(personal_group("", &user("42")), None);
        assert_eq!(personal_group("user:", &user("ana@example.com")), None);
        assert_eq!(personal_group("user:", &user(&"9".repeat(99))), None);
    }

    #[test]
    fn claims_default_to_no_rights() {
        let c: Claims = serde_json::from_str(r#"{"sub":"1","exp":9}"#).unwrap();
        let g = GroupName::parse("news").unwrap();
        assert!(!c.may_join(&g) && !c.may_publish(&g) && !c.has_scope(NOTIFY_SCOPE));
        let c: Claims = serde_json::from_str(
            r#"{"sub":"1","exp":9,"groups":["news"],"publish":["n*"],"scope":"a notify"}"#,
        )
        .unwrap();
        assert!(c.may_join(&g) && c.may_publish(&g) && c.has_scope(NOTIFY_SCOPE));
    }
}
