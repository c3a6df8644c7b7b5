//! Unit tests of the memory broker: offsets, epochs, history bounds and expiry.

use std::collections::HashSet;

use super::*;
use crate::hub::{Hub, Member, Outbound};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::protocol::EventName;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

fn g(name: &str) -> GroupName {
    GroupName::parse(name).unwrap()
}

fn publication(group: &str) -> Publication {
    Publication {
        group: g(group),
        event: EventName::default_event(),
        offset: 0,
        epoch: Epoch::default(),
        users: None,
        data: RawValue::from_string("1".into()).unwrap().into(),
    }
}

fn history(size: usize, ttl_ms: u64, max_bytes: usize) -> HistorySettings {
    HistorySettings {
        size,
        ttl: Duration::from_millis(ttl_ms),
        max_bytes,
    }
}

/// A node on a memory broker keeping `settings`, and the broker itself.
fn node_with(settings: HistorySettings) -> (Node, Arc<MemoryBroker>) {
    let hub = Arc::new(Hub::new());
    let metrics = Arc::new(Metrics::new());
    let local = Arc::new(Local::new(hub, metrics.clone()));
    let broker = MemoryBroker::new(local.clone(), settings);
    (Node::new(local, broker.clone(), metrics), broker)
}

fn node() -> (Node, Arc<MemoryBroker>) {
    node_with(history(100, 300_000, 1 << 20))
}

async fn offsets(broker: &MemoryBroker, group: &str, since: Offset) -> Vec<Offset> {
    let read = broker.history(&g(group), since, 1000).await.unwrap();
    read.entries.iter().map(|e| e.offset).collect()
}

#[tokio::test]
async fn offsets_start_at_one_per_group_and_subscribers_see_only_later_ones() {
    let (node, _) = node();
    let offset = |p: Result<Published, BrokerError>| p.unwrap().offset;
    assert_eq!(node.broker.position(&g("a")).await.unwrap().offset, 0);
    assert_eq!(offset(node.publish(publication("a")).await), 1);
    assert_eq!(offset(node.publish(publication("a")).await), 2);
    assert_eq!(offset(node.publish(publication("b")).await), 1);

    let member = Member::new(7, 4, CancellationToken::new());
    let joined = node.join(&g("a"), member.clone()).await.unwrap();
    assert_eq!(joined, node.broker.position(&g("a")).await.unwrap());
    assert_eq!(joined.offset, 2);
    let p = node.publish(publication("a")).await.unwrap();
    assert_eq!((p.offset, p.recipients), (3, 1));
    let got = member.take();
    let [Outbound::Frame(bytes)] = &got.into_iter().collect::<Vec<_>>()[..] else {
        panic!("expected one frame")
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(text.contains(r#""offset":3"#), "{text}");
    assert!(
        text.contains(&format!(r#""epoch":"{}""#, joined.epoch)),
        "{text}"
    );
    let again = Member::new(8, 4, CancellationToken::new());
    let second = node.join(&g("a"), again).await.unwrap();
    assert_eq!((second.offset, second.epoch), (3, joined.epoch));
}

#[tokio::test]
async fn groups_only_joined_and_left_leave_no_trace() {
    let (node, broker) = node();
    node.publish(publication("room:notified")).await.unwrap();
    for i in 0..100 {
        let group = g(&format!("room:{i}"));
        let member = Member::new(i, 4, CancellationToken::new());
        node.join(&group, member).await.unwrap();
        node.leave(&group, i).await.unwrap();
    }
    let hub = node.local.hub();
    assert_eq!(hub.counts(), (0, 0));
    assert_eq!(hub.group_names(), Vec::<GroupName>::new());
    assert_eq!(
        broker.notified_groups(),
        1,
        "only the notified group has state"
    );
}

#[tokio::test]
async fn history_keeps_the_latest_frames_that_members_got_live() {
    let (node, broker) = node_with(history(3, 300_000, 1 << 20));
    let member = Member::new(1, 16, CancellationToken::new());
    node.join(&g("a"), member.clone()).await.unwrap();
    for _ in 0..5 {
        node.publish(publication("a")).await.unwrap();
    }
    let read = broker.history(&g("a"), 0, 100).await.unwrap();
    assert_eq!((read.position.offset, read.first), (5, 3));
    assert_eq!(offsets(&broker, "a", 0).await, [3, 4, 5]);
    assert_eq!(offsets(&broker, "a", 3).await, [4, 5]);
    assert_eq!(
        broker.history(&g("a"), 2, 1).await.unwrap().entries.len(),
        1
    );
    let live: Vec<Outbound> = member.take().into_iter().collect();
    assert_eq!(
        live[2..],
        read.entries
            .iter()
            .map(|e| Outbound::Frame(e.frame.clone()))
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(broker.history_usage().entries, 3);
}

#[tokio::test]
async fn targeted_notifications_are_kept_with_their_audience() {
    let (node, broker) = node();
    let mut p = publication("a");
    let ana = crate::protocol::UserId::parse("ana").unwrap();
    p.users = Some(HashSet::from([ana.clone()]));
    node.publish(p).await.unwrap();
    let read = broker.history(&g("a"), 0, 10).await.unwrap();
    let entry = &read.entries[0];
    assert!(entry.is_for(Some(&ana)));
    assert!(!entry.is_for(Some(&crate::protocol::UserId::parse("bob").unwrap())));
    assert!(!entry.is_for(None));
}

#[tokio::test]
async fn the_byte_bound_drops_the_oldest_entries_of_any_group() {
    // One entry's size, measured: both groups' frames are the same length.
    let (probe, probed) = node();
    probe.publish(publication("old")).await.unwrap();
    let unit = probed.history_usage().bytes;
    assert!(unit > budget::ENTRY_OVERHEAD);

    let (node, broker) = node_with(history(100, 300_000, 5 * unit + unit / 2));
    for _ in 0..4 {
        node.publish(publication("old")).await.unwrap();
    }
    for _ in 0..4 {
        node.publish(publication("new")).await.unwrap();
    }
    assert_eq!(broker.history_usage().bytes, 5 * unit);
    assert_eq!(broker.history_usage().entries, 5);
    assert_eq!(offsets(&broker, "old", 0).await, [4]);
    assert_eq!(offsets(&broker, "new", 0).await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn idle_history_expires_and_an_unwatched_group_starts_a_new_epoch() {
    let (node, broker) = node_with(history(10, 200, 1 << 20));
    let kept = g("kept");
    let member = Member::new(1, 64, CancellationToken::new());
    node.join(&kept, member).await.unwrap();
    node.publish(publication("kept")).await.unwrap();
    let first = node.publish(publication("idle")).await.unwrap();
    let before = broker.position(&g("idle")).await.unwrap();
    assert_eq!(first.offset, 1);

    tokio::time::sleep(Duration::from_millis(250)).await;
    broker.sweep();

    // The watched group keeps its offset and epoch, but not its history.
    assert_eq!(offsets(&broker, "kept", 0).await, Vec::<Offset>::new());
    let kept_at = broker.position(&kept).await.unwrap();
    assert_eq!(kept_at.offset, 1);
    assert_eq!(broker.history(&kept, 0, 10).await.unwrap().first, 2);
    // The idle group without members is forgotten; its next notification starts over.
    assert_eq!(broker.notified_groups(), 1);
    assert_eq!(broker.history_usage().entries, 0);
    let again = node.publish(publication("idle")).await.unwrap();
    let after = broker.position(&g("idle")).await.unwrap();
    assert_eq!(again.offset, 1);
    assert_ne!(after.epoch, before.epoch);
}

#[tokio::test]
async fn history_off_keeps_offsets_and_nothing_else() {
    let (node, broker) = node_with(HistorySettings::OFF);
    node.publish(publication("a")).await.unwrap();
    assert_eq!(node.publish(publication("a")).await.unwrap().offset, 2);
    let read = broker.history(&g("a"), 0, 10).await.unwrap();
    assert!(read.entries.is_empty());
    assert_eq!((read.first, read.position.offset), (3, 2));
    assert_eq!(broker.history_usage(), HistoryUsage::default());
}
