//! Unit tests of the hub: membership, local fan-out, the join position, closes.

use super::*;
use tokio_util::sync::CancellationToken;

fn member(id: ConnId) -> Member {
    Member::new(id, 8, CancellationToken::new())
}

fn user_member(id: ConnId, user: &str) -> Member {
    let user = UserId::parse(user).unwrap();
    Member::for_user(id, 8, CancellationToken::new(), Some(user))
}

fn g(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

/// A position in the default (empty) epoch.
fn pos(offset: Offset) -> Position {
    Position {
        offset,
        epoch: Default::default(),
    }
}

/// The default (empty) epoch, the one [`pos`] is in.
fn ep() -> Epoch {
    Epoch::default()
}

fn frame(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

#[test]
fn deliver_reaches_members_of_that_group_only() {
    let hub = Hub::new();
    let (a, b) = (member(1), member(2));
    assert_eq!(hub.join(&g("a"), a.clone()), Joined::First);
    assert_eq!(hub.join(&g("b"), b.clone()), Joined::First);
    let out = hub.deliver(&g("a"), 1, &ep(), &frame("hi"), Audience::Everyone);
    assert_eq!(out, Fanout { queued: 1, slow: 0 });
    assert_eq!(a.take(), [Outbound::Frame(frame("hi"))]);
    assert!(b.take().is_empty());
}

#[test]
fn leave_reports_the_last_member_and_forgets_the_group() {
    let hub = Hub::new();
    hub.join(&g("x"), member(1));
    assert_eq!(hub.join(&g("x"), member(2)), Joined::At(pos(0)));
    assert!(!hub.leave(&g("x"), 1));
    assert!(!hub.leave(&g("x"), 1), "second leave is a no-op");
    assert!(hub.leave(&g("x"), 2));
    assert_eq!(hub.groups(10), (vec![], 0));
}

#[test]
fn close_group_empties_it_and_queues_the_close() {
    let hub = Hub::new();
    let a = member(1);
    hub.join(&g("x"), a.clone());
    let close = crate::protocol::close::application_close(4321, "bye").unwrap();
    assert_eq!(hub.close_group(&g("x"), &close), 1);
    assert_eq!(hub.subscribers(&g("x")), 0);
    assert_eq!(a.take(), [Outbound::Close(close)]);
}

#[test]
fn a_user_audience_reaches_only_those_users_members() {
    let hub = Hub::new();
    let (ana, ana2, bob, anon) = (
        user_member(1, "ana"),
        user_member(2, "ana"),
        user_member(3, "bob"),
        member(4),
    );
    for m in [&ana, &ana2, &bob, &anon] {
        hub.join(&g("x"), m.clone());
    }
    let only: HashSet<UserId> = [UserId::parse("ana").unwrap()].into();
    let out = hub.deliver(&g("x"), 1, &ep(), &frame("hi"), Audience::Users(&only));
    assert_eq!(out.queued, 2);
    assert_eq!((ana.take().len(), ana2.take().len()), (1, 1));
    assert!(bob.take().is_empty() && anon.take().is_empty());
    let users: Vec<String> = hub
        .group_users(&g("x"), 10)
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert_eq!(users, ["ana", "bob"]);
    assert_eq!(hub.group_users(&g("x"), 1).len(), 1);
}

#[test]
fn close_user_closes_every_connection_of_that_user_only() {
    let hub = Hub::new();
    let (a1, a2, b) = (
        user_member(1, "a"),
        user_member(2, "a"),
        user_member(3, "b"),
    );
    for m in [&a1, &a2, &b] {
        hub.register(m);
    }
    hub.register(&member(4));
    let close = crate::protocol::close::application_close(4403, "banned").unwrap();
    assert_eq!(hub.close_user(&UserId::parse("a").unwrap(), &close), 2);
    assert_eq!(a1.take(), [Outbound::Close(close.clone())]);
    assert_eq!(a2.take(), [Outbound::Close(close.clone())]);
    assert!(b.take().is_empty());
    hub.unregister(&b);
    assert_eq!(hub.close_user(&UserId::parse("b").unwrap(), &close), 0);
}

#[test]
fn groups_lists_sorted_and_bounded() {
    let hub = Hub::new();
    for (i, name) in ["c", "a", "b"].iter().enumerate() {
        hub.join(&g(name), member(i as ConnId));
    }
    let (list, total) = hub.groups(2);
    assert_eq!(total, 3);
    assert_eq!(list, vec![(g("a"), 1), (g("b"), 1)]);
}

#[test]
fn a_first_join_syncs_to_the_broker_offset_and_later_joins_get_the_last_delivered() {
    let hub = Hub::new();
    let a = member(1);
    assert_eq!(hub.join(&g("x"), a.clone()), Joined::First);
    assert_eq!(hub.synced(&g("x"), pos(5)), pos(5));
    // A publication at or before the synced offset was in flight: it is not delivered.
    assert_eq!(
        hub.deliver(&g("x"), 5, &ep(), &frame("old"), Audience::Everyone)
            .queued,
        0
    );
    assert_eq!(
        hub.deliver(&g("x"), 6, &ep(), &frame("new"), Audience::Everyone)
            .queued,
        1
    );
    assert_eq!(
        hub.deliver(&g("x"), 6, &ep(), &frame("again"), Audience::Everyone)
            .queued,
        0
    );
    assert_eq!(a.take(), [Outbound::Frame(frame("new"))]);
    assert_eq!(hub.join(&g("x"), member(2)), Joined::At(pos(6)));
    // The epoch learnt at the sync is what later joins are told.
    let y = g("y");
    hub.join(&y, member(3));
    let epoch = crate::protocol::Epoch::parse("e1").unwrap();
    let synced = Position {
        offset: 2,
        epoch: epoch.clone(),
    };
    assert_eq!(hub.synced(&y, synced.clone()), synced);
    assert_eq!(hub.join(&y, member(4)), Joined::At(synced));
}

#[test]
fn what_arrives_while_syncing_is_delivered_and_sets_the_position_before_it() {
    let hub = Hub::new();
    let a = member(1);
    assert_eq!(hub.join(&g("x"), a.clone()), Joined::First);
    // Delivered between the watch taking effect and the broker's offset being read.
    hub.deliver(&g("x"), 8, &ep(), &frame("8"), Audience::Everyone);
    hub.deliver(&g("x"), 9, &ep(), &frame("9"), Audience::Everyone);
    assert_eq!(hub.synced(&g("x"), pos(9)), pos(7));
    assert_eq!(a.take().len(), 2);
    // After a broker restart offsets may start again from 1: a resync accepts them.
    assert!(hub.resync(&g("x")));
    assert_eq!(
        hub.deliver(&g("x"), 1, &ep(), &frame("1"), Audience::Everyone)
            .queued,
        1
    );
    assert_eq!(hub.synced(&g("x"), pos(1)), pos(0));
    assert_eq!(
        hub.deliver(&g("x"), 2, &ep(), &frame("2"), Audience::Everyone)
            .queued,
        1
    );
    assert!(hub.leave(&g("x"), 1));
    assert!(!hub.resync(&g("x")), "a group without members is forgotten");
}

#[test]
fn a_new_epoch_re_bases_the_group_and_is_delivered_while_the_old_one_stays_deduplicated() {
    let hub = Hub::new();
    let a = member(1);
    let (old, new) = (Epoch::parse("old").unwrap(), Epoch::parse("new").unwrap());
    let at = |offset, epoch: &Epoch| Position {
        offset,
        epoch: epoch.clone(),
    };
    let x = g("x");
    assert_eq!(hub.join(&x, a.clone()), Joined::First);
    assert_eq!(hub.synced(&x, at(40, &old)), at(40, &old));
    let queued = |offset, epoch: &Epoch, text| {
        hub.deliver(&x, offset, epoch, &frame(text), Audience::Everyone)
            .queued
    };
    assert_eq!(queued(41, &old, "41"), 1);
    assert_eq!(queued(41, &old, "41 again"), 0, "same epoch: de-duplicated");
    // The group's broker state was created again (keys expired, FLUSHALL): offsets
    // start over at 1 in a new epoch, without any resync.
    assert_eq!(queued(1, &new, "n1"), 1);
    assert_eq!(
        queued(1, &new, "n1 again"),
        0,
        "the new epoch is de-duplicated too"
    );
    assert_eq!(queued(2, &new, "n2"), 1);
    assert_eq!(
        a.take(),
        ["41", "n1", "n2"].map(|t| Outbound::Frame(frame(t)))
    );
    // Members joining now are told the new epoch and the last offset delivered in it.
    assert_eq!(hub.join(&x, member(2)), Joined::At(at(2, &new)));
    // A resync takes the broker's epoch again, whatever was delivered before.
    assert!(hub.resync(&x));
    assert_eq!(hub.synced(&x, at(7, &old)), at(7, &old));
    assert_eq!(queued(7, &old, "7"), 0);
    assert_eq!(queued(8, &old, "8"), 2);
}

#[test]
fn a_fan_out_soon_after_the_previous_one_is_a_burst() {
    let group = Group::syncing(Default::default());
    assert!(!group.in_burst(5_000, 1_000), "the first fan-out");
    assert!(group.in_burst(5_500, 1_000));
    assert!(
        !group.in_burst(7_000, 1_000),
        "1.5 us after the previous one"
    );
    assert!(group.in_burst(7_000, 1_000), "two at the same instant");
}
