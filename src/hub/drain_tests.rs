//! The hub's write-behind fan-out on real sockets: what each client receives, in order,
//! when fan-outs wait in the drains while members join, leave or are closed.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::protocol::CloseCode;

/// More members than [`INLINE_MAX`]: the group's fan-outs go through the drains.
const LARGE: usize = INLINE_MAX + 4;

fn g() -> GroupName {
    GroupName::parse("room").unwrap()
}

/// A member with a real socket; the client's end reads everything it gets.
struct Client {
    member: Member,
    read: tokio::task::JoinHandle<Vec<u8>>,
}

impl Client {
    async fn connect(id: ConnId, capacity: usize) -> Self {
        Self::connect_as(id, capacity, None).await
    }

    async fn connect_as(id: ConnId, capacity: usize, user: Option<UserId>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(connect, listener.accept());
        let member = Member::for_user(id, capacity, CancellationToken::new(), user);
        member.attach(accepted.unwrap().0);
        let mut client = client.unwrap();
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        Self { member, read }
    }

    /// Everything the client received once herald let go of the socket.
    async fn received(self) -> String {
        self.member.release();
        String::from_utf8(self.read.await.unwrap()).unwrap()
    }
}

/// A synced group of `n` connected members, ids from `first`.
async fn group(hub: &Hub, first: ConnId, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for id in first..first + n as ConnId {
        let client = Client::connect(id, 64).await;
        if hub.join(&g(), client.member.clone()) == Joined::First {
            let start = Position {
                offset: 0,
                epoch: Epoch::default(),
            };
            hub.synced(&g(), start);
        }
        clients.push(client);
    }
    clients
}

/// Waits until the drains have written everything handed to them so far.
async fn settled(hub: &Hub) {
    tokio::time::timeout(Duration::from_secs(10), hub.delivered())
        .await
        .expect("the drains finish");
}

fn publish(hub: &Hub, offset: Offset) -> Fanout {
    let frame = Bytes::from(format!("{offset},"));
    hub.deliver(&g(), offset, &Epoch::default(), &frame, Audience::Everyone)
}

/// `from..=to` as the clients receive it.
fn run(from: Offset, to: Offset) -> String {
    (from..=to).map(|o| format!("{o},")).collect()
}

#[tokio::test]
async fn a_group_sees_every_frame_in_order_across_bursts_steady_fan_outs_and_shrinking() {
    let hub = Hub::new();
    let mut clients = group(&hub, 1, LARGE).await;
    let mut offset = 0;
    // Bursts (no turn for the drain in between) alternating with single fan-outs the
    // drain writes before the next one.
    for burst in [5, 1, 30, 1, 1, 12] {
        for _ in 0..burst {
            offset += 1;
            assert_eq!(publish(&hub, offset).queued, LARGE);
        }
        if burst == 1 {
            settled(&hub).await;
        }
    }
    // Down to a small group while fan-outs are still pending: the next ones must queue
    // behind them, then (once written) go inline, then as a small group's burst.
    let left: Vec<Client> = clients.drain(..5).collect();
    for c in &left {
        assert!(!hub.leave(&g(), c.member.id()));
    }
    let shrunk = offset;
    for _ in 0..3 {
        offset += 1;
        publish(&hub, offset);
    }
    settled(&hub).await;
    for _ in 0..10 {
        offset += 1;
        publish(&hub, offset);
    }
    settled(&hub).await;
    for c in clients {
        assert_eq!(c.received().await, run(1, offset));
    }
    for c in left {
        assert_eq!(
            c.received().await,
            run(1, shrunk),
            "nothing after the leave"
        );
    }
}

#[tokio::test]
async fn a_member_joining_while_a_fan_out_waits_in_the_drain_gets_only_later_ones() {
    let hub = Hub::new();
    let early = group(&hub, 1, LARGE).await;
    publish(&hub, 1);
    // The drain has not run yet (this runtime has one thread and the test has not yielded).
    let late = Client::connect(100, 64).await;
    assert_eq!(
        hub.join(&g(), late.member.clone()),
        Joined::At(Position {
            offset: 1,
            epoch: Epoch::default()
        }),
        "the join position counts the pending fan-out"
    );
    assert_eq!(publish(&hub, 2).queued, LARGE + 1);
    settled(&hub).await;
    assert_eq!(late.received().await, "2,");
    for c in early {
        assert_eq!(c.received().await, "1,2,");
    }
}

#[tokio::test]
async fn a_member_that_does_not_read_is_closed_as_a_slow_consumer_by_the_drain() {
    let hub = Hub::new();
    let readers = group(&hub, 1, LARGE).await;
    // Its client never reads: with small socket buffers, a queue of 2 frames fills after
    // a few fan-outs.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stuck, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr().unwrap()),
        listener.accept()
    );
    let (stuck, accepted) = (stuck.unwrap(), accepted.unwrap().0);
    socket2::SockRef::from(&stuck)
        .set_recv_buffer_size(4096)
        .unwrap();
    socket2::SockRef::from(&accepted)
        .set_send_buffer_size(4096)
        .unwrap();
    let slow = Member::new(100, 2, CancellationToken::new());
    slow.attach(accepted);
    hub.join(&g(), slow.clone());
    let big = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut published = 0;
    while !slow.close_requested() {
        assert!(published < 100, "never closed");
        published += 1;
        hub.deliver(&g(), published, &Epoch::default(), &big, Audience::Everyone);
        settled(&hub).await;
    }
    assert_eq!(
        slow.requested_close(),
        Some(CloseCode::SLOW_CONSUMER.frame())
    );
    for c in readers {
        assert_eq!(c.received().await.len(), published as usize * big.len());
    }
}

#[tokio::test]
async fn leave_and_close_group_keep_the_fan_outs_published_before_them() {
    let hub = Hub::new();
    let mut clients = group(&hub, 1, LARGE).await;
    publish(&hub, 1);
    let gone = clients.pop().unwrap();
    hub.leave(&g(), gone.member.id());
    publish(&hub, 2);
    let close = crate::protocol::close::application_close(4321, "bye").unwrap();
    assert_eq!(hub.close_group(&g(), &close), LARGE - 1);
    // Not closed before the pending fan-outs are written.
    assert!(clients.iter().all(|c| c.member.take().is_empty()));
    settled(&hub).await;
    for c in clients {
        assert_eq!(c.member.take(), [Outbound::Close(close.clone())]);
        assert_eq!(c.received().await, "1,2,");
    }
    assert_eq!(gone.received().await, "1,");
}

#[tokio::test]
async fn fan_outs_to_everyone_and_to_some_users_stay_in_order_in_one_drain_run() {
    let hub = Hub::new();
    let ana = UserId::parse("ana").unwrap();
    let mut clients = Vec::new();
    for id in 1..=LARGE as ConnId {
        let client = Client::connect_as(id, 64, Some(ana.clone())).await;
        if hub.join(&g(), client.member.clone()) == Joined::First {
            hub.synced(&g(), Position::default());
        }
        clients.push(client);
    }
    let only: HashSet<UserId> = [ana].into();
    for offset in 1..=6 {
        let frame = Bytes::from(format!("{offset},"));
        let audience = match offset % 3 {
            0 => Audience::Users(&only),
            _ => Audience::Everyone,
        };
        hub.deliver(&g(), offset, &Epoch::default(), &frame, audience);
    }
    settled(&hub).await;
    for c in clients {
        assert_eq!(c.received().await, run(1, 6));
    }
}

#[tokio::test]
async fn a_connection_that_leaves_and_joins_again_gets_the_frames_in_order() {
    let hub = Hub::new();
    let mut clients = group(&hub, 1, LARGE).await;
    publish(&hub, 1);
    // Every member leaves (the group is forgotten) before the drain wrote offset 1; one
    // joins again at once and the group is small now: its next frame must not overtake.
    for c in &clients {
        hub.leave(&g(), c.member.id());
    }
    let back = clients.pop().unwrap();
    assert_eq!(hub.join(&g(), back.member.clone()), Joined::First);
    hub.synced(
        &g(),
        Position {
            offset: 1,
            epoch: Epoch::default(),
        },
    );
    publish(&hub, 2);
    settled(&hub).await;
    assert_eq!(back.received().await, "1,2,");
    for c in clients {
        assert_eq!(c.received().await, "1,");
    }
}
