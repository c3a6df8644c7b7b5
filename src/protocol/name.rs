//! Validated names: the one place the group and event naming rule lives.
//!
//! Both follow the Django Channels group rule plus `:` for namespaces (`user:42`):
//! 1–100 characters of `A-Z a-z 0-9 _ - . :`. Because none of those characters needs
//! escaping in JSON, a validated name can be written into a frame verbatim.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest group or event name, in characters (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 100;

/// Why a name was refused; the message is shown to the caller as-is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} name {shown:?} is invalid: use 1-100 characters of A-Z a-z 0-9 _ - . :")]
pub struct InvalidName {
    what: &'static str,
    shown: String,
}

/// The bytes a name may contain, as a table: every name a publish carries is checked,
/// and one lookup per byte is cheaper than the chain of range tests.
const NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':');
        b += 1;
    }
    table
};

fn check(what: &'static str, raw: &str) -> Result<(), InvalidName> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_NAME_LEN
        && raw.bytes().all(|b| NAME_BYTES[usize::from(b)]);
    if ok {
        Ok(())
    } else {
        // Echo at most a prefix so an oversized name does not bloat the error body.
        let shown = raw.chars().take(MAX_NAME_LEN + 1).collect();
        Err(InvalidName { what, shown })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `raw` against the naming rule.
            pub fn parse(raw: &str) -> Result<Self, InvalidName> {
                check($what, raw)?;
                Ok(Self(Arc::from(raw)))
            }

            /// The name as written by the client.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Reading a name validates it, so a name from another node is checked too.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A group name (`chat:lobby`, `user:42`). Cheap to clone: the text is shared.
    GroupName,
    "group"
);
name_type!(
    /// An event type (`chat.message`), the Channels `type` of a notification.
    EventName,
    "event"
);

/// Longest user id, in bytes.
pub const MAX_USER_LEN: usize = 256;

/// A user id: the `sub` claim of a token, `users` in a notify, `{user}` in a user close.
/// 1-256 bytes of UTF-8 without control characters; otherwise free-form (ids, emails,
/// `auth0|123`), since identity providers pick them, not herald. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("user id is invalid: use 1-256 bytes of UTF-8 without control characters")]
pub struct InvalidUserId;

impl UserId {
    /// Validates `raw` against the user id rule.
    pub fn parse(raw: &str) -> Result<Self, InvalidUserId> {
        let ok = !raw.is_empty() && raw.len() <= MAX_USER_LEN && !raw.chars().any(char::is_control);
        if ok {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(InvalidUserId)
        }
    }

    /// The id as the token or request wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl EventName {
    /// The event used when a notify request names none.
    pub fn default_event() -> Self {
        // One shared name: most notifies omit `event`, and a clone is a reference count.
        static MESSAGE: OnceLock<EventName> = OnceLock::new();
        MESSAGE.get_or_init(|| Self(Arc::from("message"))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_channels_charset_plus_colon() {
        for ok in [
            "a",
            "user:42",
            "chat.room_1-b",
            &"x".repeat(100),
            "A:B.c-d_e",
        ] {
            assert!(GroupName::parse(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn refuses_empty_long_and_foreign_characters() {
        for bad in [
            "",
            &"x".repeat(101),
            "a b",
            "a/b",
            "é",
            "a\"b",
            "a*",
            "a%20",
        ] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn user_ids_are_free_form_but_bounded_and_printable() {
        for ok in ["42", "auth0|abc", "ana@example.com", "é", &"u".repeat(256)] {
            assert!(UserId::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", &"u".repeat(257), "a\nb", "\u{0}"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_table_allows_exactly_the_rule_s_bytes() {
        for b in 0..=255u8 {
            let rule = b.is_ascii_alphanumeric() || b"_-.:".contains(&b);
            assert_eq!(NAME_BYTES[usize::from(b)], rule, "byte {b}");
        }
    }

    #[test]
    fn error_message_names_the_rule() {
        let err = EventName::parse("no way").unwrap_err().to_string();
        assert!(
            err.contains("event name") && err.contains("A-Z a-z 0-9 _ - . :"),
            "{err}"
        );
    }
}
