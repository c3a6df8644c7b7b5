//! `Epoch`: the name of one run of a group's offsets. Offsets are comparable only within
//! one epoch: a memory broker restart, or a group whose state expired and was created
//! again, starts a new epoch (and offsets start again at 1).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest epoch accepted from a client or another node.
pub const MAX_EPOCH_LEN: usize = 64;

/// Random characters in an epoch herald makes (48 bits: two runs of one group never
/// share one in practice).
const RANDOM_LEN: usize = 12;

/// An epoch refused because it is too long or has characters other than
/// `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("epoch must be at most {MAX_EPOCH_LEN} characters of A-Z a-z 0-9 _ -")]
pub struct InvalidEpoch;

/// A group's epoch. Cheap to clone (one `Arc`); its characters need no JSON escaping, so
/// it is written into frames verbatim.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Epoch(Arc<str>);

impl Epoch {
    /// A new random epoch.
    pub fn random() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        // The first 12 hex digits of a v4 UUID are all random (the version digit is the 13th).
        Self(Arc::from(&id[..RANDOM_LEN]))
    }

    /// Validates an epoch a client (or another node) sent.
    pub fn parse(raw: &str) -> Result<Self, InvalidEpoch> {
        let ok = raw.len() <= MAX_EPOCH_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if ok {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(InvalidEpoch)
        }
    }

    /// The epoch as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Reading an epoch validates it, so one from another node is checked too.
impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Where a group stands: its latest offset and the epoch that offset belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    /// Offset of the group's latest notification (0: none in this epoch).
    pub offset: super::Offset,
    /// The run of offsets it belongs to.
    pub epoch: Epoch,
}

/// Where a client asks to resume a group from: the last offset it saw and its epoch
/// (`None`: it did not say, so nothing can be recovered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Offset of the last notification the client saw.
    pub since: super::Offset,
    /// The epoch of that offset.
    pub epoch: Option<Epoch>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_epochs_differ_and_parse_back() {
        let (a, b) = (Epoch::random(), Epoch::random());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), RANDOM_LEN);
        assert_eq!(Epoch::parse(a.as_str()), Ok(a));
    }

    #[test]
    fn only_short_plain_epochs_are_accepted() {
        assert!(Epoch::parse("abc-DEF_123").is_ok());
        assert!(Epoch::parse(&"a".repeat(MAX_EPOCH_LEN + 1)).is_err());
        for bad in ["a\"b", "a b", "é", "a\\"] {
            assert!(Epoch::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Epoch>(r#""x y""#).is_err());
    }
}
