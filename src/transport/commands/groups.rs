//! The groups one connection is in: a vector searched linearly rather than a hash set.
//!
//! It holds one group or a handful, never more than `--max-subscriptions` (100 by
//! default), and it lives as long as the connection: a hash set's smallest table (4
//! buckets plus control bytes, ~96 bytes allocated and 48 inline) costs every idle
//! connection more than a few comparisons per `subscribe` save. A boxed slice rather than
//! a `Vec`: no capacity field (8 bytes in every idle session task); a join or leave,
//! rare next to the connection's life, reallocates it to the exact length.

use crate::protocol::GroupName;

/// Distinct groups, in no particular order.
#[derive(Default)]
pub(super) struct Groups(Box<[GroupName]>);

impl Groups {
    /// Whether `group` is one of them.
    pub(super) fn contains(&self, group: &GroupName) -> bool {
        self.0.contains(group)
    }

    /// Adds `group`; `false` if it was already there. Grows one slot at a time, so it
    /// never holds room for groups the connection is not in.
    pub(super) fn insert(&mut self, group: GroupName) -> bool {
        if self.contains(&group) {
            return false;
        }
        let mut groups = std::mem::take(&mut self.0).into_vec();
        groups.reserve_exact(1);
        groups.push(group);
        self.0 = groups.into_boxed_slice();
        true
    }

    /// Removes `group`; `false` if it was not there.
    pub(super) fn remove(&mut self, group: &GroupName) -> bool {
        match self.0.iter().position(|g| g == group) {
            Some(at) => {
                let mut groups = std::mem::take(&mut self.0).into_vec();
                groups.swap_remove(at);
                self.0 = groups.into_boxed_slice();
                true
            }
            None => false,
        }
    }

    /// How many there are.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// All of them.
    pub(super) fn iter(&self) -> impl Iterator<Item = &GroupName> {
        self.0.iter()
    }

    /// Takes all of them, leaving none (and nothing allocated).
    pub(super) fn take(&mut self) -> Vec<GroupName> {
        std::mem::take(&mut self.0).into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> GroupName {
        GroupName::parse(s).expect("a valid group name")
    }

    #[test]
    fn groups_are_distinct_and_removed_exactly() {
        let mut groups = Groups::default();
        assert!(groups.insert(name("a")));
        assert!(groups.insert(name("b")));
        assert!(!groups.insert(name("a")));
        assert_eq!(groups.len(), 2);
        assert!(groups.contains(&name("b")));
        assert!(groups.remove(&name("a")));
        assert!(!groups.remove(&name("a")));
        assert!(!groups.contains(&name("a")));
        assert_eq!(groups.iter().collect::<Vec<_>>(), [&name("b")]);
        assert_eq!(groups.take(), [name("b")]);
        assert_eq!(groups.len(), 0);
    }
}
