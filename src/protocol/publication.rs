//! A notification as brokers carry it between nodes: what every node's local delivery
//! needs and nothing transport-specific.

use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::{Epoch, EventName, GroupName, Offset, UserId};

/// One notification in one group, with the offset its broker assigned. Serialisable so a
/// broker between nodes (Redis) can send it as it is; every node decodes it once and
/// encodes the client frame once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publication {
    /// The group it was sent to.
    pub group: GroupName,
    /// The event type.
    pub event: EventName,
    /// Its position in the group; assigned by the broker, so 0 until published.
    #[serde(default)]
    pub offset: Offset,
    /// The epoch `offset` belongs to; assigned with it.
    #[serde(default)]
    pub epoch: Epoch,
    /// Only connections of these users receive it; `None`: every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<HashSet<UserId>>,
    /// The JSON the backend sent, forwarded verbatim.
    pub data: Data,
}

/// A notification's `data`: one JSON value, exactly as the backend wrote it.
///
/// Shared rather than copied: taken from a request body it is a slice of that body, so
/// publishing it to several groups, or the items of a batch, copies nothing until the
/// frame is encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Data(Bytes);

impl Data {
    /// `raw`, which was parsed from `body` (as a borrowed `RawValue` is), as a slice of
    /// `body`. A value that does not lie within `body` is copied instead.
    pub fn in_body(body: &Bytes, raw: &RawValue) -> Self {
        let text = raw.get().as_bytes();
        let (within, inner) = (body.as_ptr_range(), text.as_ptr_range());
        // `slice_ref` panics on a slice from elsewhere: check first.
        if within.start <= inner.start && inner.end <= within.end {
            Self(body.slice_ref(text))
        } else {
            Self(Bytes::copy_from_slice(text))
        }
    }

    /// The JSON text, as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The JSON text. Always valid UTF-8; checked again here, so only for cold paths.
    pub fn get(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl From<Box<RawValue>> for Data {
    fn from(raw: Box<RawValue>) -> Self {
        let text: Box<str> = raw.into();
        Self(Bytes::from(text.into_boxed_bytes()))
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// Written as the JSON value itself (for a broker between nodes).
impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_validates_names() {
        let publication = Publication {
            group: GroupName::parse("room:1").unwrap(),
            event: EventName::parse("chat.message").unwrap(),
            offset: 7,
            epoch: Epoch::parse("ep").unwrap(),
            users: Some([UserId::parse("ana").unwrap()].into()),
            data: RawValue::from_string(r#"{"a":[1,2]}"#.into())
                .unwrap()
                .into(),
        };
        let json = serde_json::to_string(&publication).unwrap();
        let back: Publication = serde_json::from_str(&json).unwrap();
        assert_eq!(back.group, publication.group);
        assert_eq!((back.offset, back.data.get()), (7, r#"{"a":[1,2]}"#));
        assert_eq!(back.epoch, publication.epoch);
        assert_eq!(back.users, publication.users);
        let bad = json.replace("room:1", "room 1");
        assert!(serde_json::from_str::<Publication>(&bad).is_err());
    }

    #[test]
    fn data_from_a_body_is_a_slice_of_it_and_anything_else_a_copy() {
        let body = Bytes::from_static(br#"{"data": [1, "x"] }"#);
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        let raw = serde_json::from_slice::<Body<'_>>(&body).unwrap().data;
        let data = Data::in_body(&body, raw);
        assert_eq!(data.get(), r#"[1, "x"]"#);
        assert_eq!(data.as_bytes().as_ptr(), raw.get().as_ptr(), "not copied");
        let elsewhere = RawValue::from_string("[1]".into()).unwrap();
        let copied = Data::in_body(&body, &elsewhere);
        assert_eq!(copied.get(), "[1]");
        assert_ne!(copied.as_bytes().as_ptr(), elsewhere.get().as_ptr());
    }
}
