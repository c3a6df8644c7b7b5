//! Every Redis key and channel herald uses, in one place.
//!
//! A group's offset, epoch and history keys and its channel share the hash tag `{<group>}`, so in a Cluster
//! they live in one hash slot: the publish script may touch both, and sharded pub/sub
//! spreads groups over the shards. Group names cannot contain braces, so the tag is
//! exactly the group name. Node presence shares the tag `{nodes}`, so it can be read with
//! one `MGET`.

use crate::protocol::GroupName;

/// Key and channel names under one prefix (`--redis-prefix`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`, which must not contain `{` or `}` (it would change the
    /// hash tags); [`Keys::check_prefix`] says so at startup.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Refuses a prefix with braces.
    pub fn check_prefix(prefix: &str) -> Result<(), String> {
        if prefix.contains(['{', '}']) {
            return Err("must not contain { or } (herald adds its own hash tags)".into());
        }
        Ok(())
    }

    /// The group's offset counter.
    pub fn offset(&self, group: &GroupName) -> String {
        format!("{}{{{}}}:offset", self.prefix, group.as_str())
    }

    /// The group's epoch: the name of its run of offsets.
    pub fn epoch(&self, group: &GroupName) -> String {
        format!("{}{{{}}}:epoch", self.prefix, group.as_str())
    }

    /// The group's history Stream (entry ids are offsets).
    pub fn history(&self, group: &GroupName) -> String {
        format!("{}{{{}}}:history", self.prefix, group.as_str())
    }

    /// The group's pub/sub channel.
    pub fn channel(&self, group: &GroupName) -> String {
        format!("{}{{{}}}", self.prefix, group.as_str())
    }

    /// The group a channel belongs to, if it is one of ours.
    pub fn group_of(&self, channel: &[u8]) -> Option<GroupName> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let name = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
        GroupName::parse(std::str::from_utf8(name).ok()?).ok()
    }

    /// The channel for closes and their answers between nodes. Not of the form
    /// `<prefix>{<name>}`, so no group's channel can be it.
    pub fn control(&self) -> String {
        format!("{}{{nodes}}:control", self.prefix)
    }

    /// The sorted set of live nodes, scored by when their presence expires (ms).
    pub fn nodes(&self) -> String {
        format!("{}{{nodes}}", self.prefix)
    }

    /// One node's presence: its group counts, expiring with the node.
    pub fn node(&self, id: &str) -> String {
        format!("{}{{nodes}}:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_key_and_channel_share_a_hash_tag_and_channels_map_back() {
        let keys = Keys::new("herald:");
        let g = GroupName::parse("room:1").unwrap();
        assert_eq!(keys.offset(&g), "herald:{room:1}:offset");
        assert_eq!(keys.channel(&g), "herald:{room:1}");
        assert_eq!(keys.epoch(&g), "herald:{room:1}:epoch");
        assert_eq!(keys.history(&g), "herald:{room:1}:history");
        assert_eq!(keys.group_of(b"herald:{room:1}"), Some(g));
        assert_eq!(keys.group_of(keys.control().as_bytes()), None);
        assert_eq!(keys.group_of(b"other:{room:1}"), None);
        assert!(Keys::check_prefix("a{b").is_err() && Keys::check_prefix("app:").is_ok());
    }
}
