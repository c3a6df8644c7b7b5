//! A notification as brokers carry it between nodes: what every node's local delivery
//! needs and nothing transport-specific.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
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
    pub data: Box<RawValue>,
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
            data: RawValue::from_string(r#"{"a":[1,2]}"#.into()).unwrap(),
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
}
