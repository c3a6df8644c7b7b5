//! History: the latest notifications of each group, kept so that a client that
//! reconnects with `since` (and the epoch it came from) gets exactly what it missed.
//!
//! Brokers keep it (a ring per group in memory, a Stream per group in Redis); deciding
//! what a resume gets is the same for every broker and lives here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::protocol::{Epoch, Offset, Position, UserId};

/// How long a group's offset and epoch outlive its last notification when it has no
/// members and history is off (with history on, `--history-ttl` decides).
pub const IDLE_WITHOUT_HISTORY: Duration = Duration::from_secs(300);

/// What the history flags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Notifications kept per group (`--history-size`).
    pub size: usize,
    /// How long a group's history outlives its last notification (`--history-ttl`).
    pub ttl: Duration,
    /// Bytes all groups' history may hold together (`--history-max-bytes`).
    pub max_bytes: usize,
}

impl HistorySettings {
    /// No history: offsets only.
    pub const OFF: Self = Self {
        size: 0,
        ttl: Duration::ZERO,
        max_bytes: 0,
    };

    /// Whether any history is kept (`0` for the size or the TTL turns it off).
    pub fn is_on(&self) -> bool {
        self.size > 0 && !self.ttl.is_zero() && self.max_bytes > 0
    }

    /// How long a group's state (offset, epoch, history) outlives its last notification
    /// once no member is left to need it.
    pub fn idle(&self) -> Duration {
        if self.is_on() {
            self.ttl
        } else {
            IDLE_WITHOUT_HISTORY
        }
    }
}

/// One notification as history keeps it: the frame members got live, byte for byte, and
/// who got it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its offset in the group.
    pub offset: Offset,
    /// The complete encoded WebSocket frame, shared with every copy.
    pub frame: Bytes,
    /// Only these users' connections may see it again; `None`: every member.
    pub users: Option<Arc<HashSet<UserId>>>,
}

impl Entry {
    /// Whether a connection of `user` (`None`: auth off) received it live.
    pub fn is_for(&self, user: Option<&UserId>) -> bool {
        match &self.users {
            None => true,
            Some(users) => user.is_some_and(|u| users.contains(u)),
        }
    }
}

/// What a history read found.
#[derive(Debug, Clone, Default)]
pub struct HistoryRead {
    /// The group's latest position when it was read.
    pub position: Position,
    /// The oldest offset still kept; `position.offset + 1` when nothing is kept.
    pub first: Offset,
    /// Kept notifications after the requested offset, oldest first, at most the limit.
    pub entries: Vec<Entry>,
}

/// What a resume gets.
#[derive(Debug, Clone)]
pub enum Recovery {
    /// Every notification after `since` up to the join, oldest first (targeted ones
    /// included: filter with [`Entry::is_for`]).
    Recovered(Vec<Entry>),
    /// The client's epoch is not the group's (a restart, or the group's state expired):
    /// its offsets mean nothing here.
    EpochChanged,
    /// Some of what was missed is no longer kept (older than the history, or `since` is
    /// ahead of the group).
    Gap,
    /// The broker could not be read.
    Unavailable,
}

impl Recovery {
    /// What `subscribed` says in `recovered`.
    pub fn recovered(&self) -> bool {
        matches!(self, Self::Recovered(_))
    }

    /// Label for `herald_history_recoveries_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Recovered(_) => "recovered",
            Self::EpochChanged => "epoch_changed",
            Self::Gap => "gap",
            Self::Unavailable => "unavailable",
        }
    }

    /// The frames a connection of `user` gets replayed, oldest first.
    pub fn frames_for(&self, user: Option<&UserId>) -> Vec<Bytes> {
        match self {
            Self::Recovered(entries) => entries
                .iter()
                .filter(|e| e.is_for(user))
                .map(|e| e.frame.clone())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Every label of `herald_history_recoveries_total{outcome}`.
pub const OUTCOMES: [&str; 4] = ["recovered", "epoch_changed", "gap", "unavailable"];

/// Decides a resume before reading history: `joined` is where live delivery starts for
/// the member. `None` when history must be read to decide.
pub fn precheck(joined: &Position, since: Offset, epoch: Option<&Epoch>) -> Option<Recovery> {
    if epoch != Some(&joined.epoch) {
        return Some(Recovery::EpochChanged);
    }
    if since > joined.offset {
        return Some(Recovery::Gap);
    }
    (since == joined.offset).then(|| Recovery::Recovered(Vec::new()))
}

/// Decides a resume from the history read after joining: the notifications after
/// `since` up to `joined` must all be there. Those after `joined` arrive live, so they
/// are dropped here: no gap and no duplicate at the seam.
pub fn replay(joined: &Position, since: Offset, read: HistoryRead) -> Recovery {
    if read.position.epoch != joined.epoch {
        return Recovery::EpochChanged;
    }
    if read.first > since + 1 {
        return Recovery::Gap;
    }
    let mut entries = read.entries;
    entries.retain(|e| e.offset > since && e.offset <= joined.offset);
    let complete = entries
        .iter()
        .zip(since + 1..)
        .all(|(e, expected)| e.offset == expected)
        && entries.len() as u64 == joined.offset - since;
    if complete {
        Recovery::Recovered(entries)
    } else {
        Recovery::Gap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(e: &str) -> Epoch {
        Epoch::parse(e).unwrap()
    }

    fn at(offset: Offset) -> Position {
        Position {
            offset,
            epoch: epoch("e"),
        }
    }

    fn entry(offset: Offset, users: Option<&[&str]>) -> Entry {
        Entry {
            offset,
            frame: Bytes::from(offset.to_string()),
            users: users.map(|u| Arc::new(u.iter().map(|u| UserId::parse(u).unwrap()).collect())),
        }
    }

    fn read(
        latest: Offset,
        first: Offset,
        offsets: std::ops::RangeInclusive<Offset>,
    ) -> HistoryRead {
        HistoryRead {
            position: at(latest),
            first,
            entries: offsets.map(|o| entry(o, None)).collect(),
        }
    }

    #[test]
    fn precheck_settles_epoch_changes_future_offsets_and_nothing_missed() {
        let e = epoch("e");
        assert!(matches!(
            precheck(&at(5), 5, Some(&epoch("x"))),
            Some(Recovery::EpochChanged)
        ));
        assert!(matches!(
            precheck(&at(5), 5, None),
            Some(Recovery::EpochChanged)
        ));
        assert!(matches!(precheck(&at(5), 6, Some(&e)), Some(Recovery::Gap)));
        assert!(
            matches!(precheck(&at(5), 5, Some(&e)), Some(Recovery::Recovered(v)) if v.is_empty())
        );
        assert!(precheck(&at(5), 2, Some(&e)).is_none());
    }

    #[test]
    fn replay_keeps_exactly_since_to_the_join_and_drops_what_comes_live() {
        // Joined at 7; the history read later already holds 8 and 9.
        let got = replay(&at(7), 3, read(9, 1, 4..=9));
        let Recovery::Recovered(entries) = got else {
            panic!("expected recovered")
        };
        let offsets: Vec<Offset> = entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [4, 5, 6, 7]);
    }

    #[test]
    fn replay_reports_a_gap_when_history_no_longer_reaches_since() {
        assert!(matches!(
            replay(&at(7), 3, read(7, 5, 5..=7)),
            Recovery::Gap
        ));
        assert!(matches!(
            replay(&at(7), 4, read(7, 5, 5..=7)),
            Recovery::Recovered(_)
        ));
        // A read of another epoch (the state was recreated in between).
        let mut other = read(7, 1, 1..=7);
        other.position.epoch = epoch("new");
        assert!(matches!(replay(&at(7), 3, other), Recovery::EpochChanged));
        // Entries missing in the middle are never passed off as complete.
        let mut holes = read(7, 1, 1..=7);
        holes.entries.remove(4);
        assert!(matches!(replay(&at(7), 3, holes), Recovery::Gap));
    }

    #[test]
    fn targeted_entries_replay_only_to_their_users() {
        let r = Recovery::Recovered(vec![
            entry(1, None),
            entry(2, Some(&["ana"])),
            entry(3, None),
        ]);
        let ana = UserId::parse("ana").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_eq!(r.frames_for(Some(&ana)).len(), 3);
        assert_eq!(
            r.frames_for(Some(&bob)),
            [Bytes::from("1"), Bytes::from("3")]
        );
        assert_eq!(r.frames_for(None).len(), 2);
    }

    #[test]
    fn zero_size_or_ttl_turns_history_off() {
        let on = HistorySettings {
            size: 100,
            ttl: Duration::from_secs(300),
            max_bytes: 1 << 20,
        };
        assert!(on.is_on());
        assert_eq!(on.idle(), on.ttl);
        assert!(!HistorySettings { size: 0, ..on }.is_on());
        assert!(!HistorySettings {
            ttl: Duration::ZERO,
            ..on
        }
        .is_on());
        assert_eq!(HistorySettings::OFF.idle(), IDLE_WITHOUT_HISTORY);
    }
}
