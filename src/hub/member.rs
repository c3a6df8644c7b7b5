//! One connection as the hub sees it: an id, a bounded outbound queue and a way to close it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol::{Close, CloseCode, UserId};

/// Identifies a connection within this node.
pub type ConnId = u64;

/// Something queued for a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A complete, encoded WebSocket frame shared with other recipients.
    Frame(Bytes),
    /// Close with this frame once everything queued before it is written.
    Close(Close),
}

/// The hub's handle to one connection. Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct Member(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    id: ConnId,
    /// The authenticated user (`sub`); `None` when auth is off.
    user: Option<UserId>,
    /// Most frames queued at once (`--send-queue`).
    capacity: usize,
    /// A plain mutex around a deque rather than a channel: an idle connection's queue owns
    /// no memory at all (a channel preallocates a block), and the session takes the whole
    /// queue per wake-up, which frees a burst's memory as soon as it is written.
    state: Mutex<State>,
    /// Wakes the session when the queue goes from empty to non-empty.
    ready: Notify,
    /// Cancelled by [`Member::close_now`]; a child of the server's shutdown token, so one
    /// `select!` arm in the session covers both.
    token: CancellationToken,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// When the queue last went from empty to non-empty (delivery-lag metric).
    since: Option<Instant>,
    /// First close requested wins; `None` with a cancelled token means shutdown.
    close: Option<Close>,
    /// The session has ended; nothing more is queued.
    ended: bool,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the connection.
    Queued,
    /// The queue was full: the connection is being closed as a slow consumer.
    Slow,
    /// The connection has already ended.
    Gone,
}

impl Member {
    /// Creates the handle for connection `id` with a queue of `capacity` frames; `token`
    /// should be a child of the shutdown token.
    pub fn new(id: ConnId, capacity: usize, token: CancellationToken) -> Self {
        Self::for_user(id, capacity, token, None)
    }

    /// Like [`Member::new`], for a connection authenticated as `user`.
    pub fn for_user(
        id: ConnId,
        capacity: usize,
        token: CancellationToken,
        user: Option<UserId>,
    ) -> Self {
        let state = Mutex::new(State::default());
        Self(Arc::new(Shared {
            id,
            user,
            capacity,
            state,
            ready: Notify::new(),
            token,
        }))
    }

    /// The connection id.
    pub fn id(&self) -> ConnId {
        self.0.id
    }

    /// The authenticated user, if auth is on.
    pub fn user(&self) -> Option<&UserId> {
        self.0.user.as_ref()
    }

    // A poisoned lock means a panic while holding it; `State` is always consistent between
    // statements, so keep serving rather than spread the panic.
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a shared frame without waiting. A full queue closes the connection with
    /// [`CloseCode::SLOW_CONSUMER`]: herald never skips a frame silently.
    pub fn try_deliver(&self, frame: &Bytes) -> Delivery {
        self.try_deliver_at(frame, Instant::now())
    }

    /// [`Member::try_deliver`] of a frame published at `at` (one clock read per fan-out).
    pub fn try_deliver_at(&self, frame: &Bytes, at: Instant) -> Delivery {
        self.push(Outbound::Frame(frame.clone()), at)
    }

    /// Puts `frames` in front of everything queued, in order: a resume's `subscribed`
    /// frame and replayed notifications go before the live ones queued since the join.
    /// The queue bound still applies: frames that do not fit close the connection as a
    /// slow consumer, exactly as live ones would.
    pub fn prepend(&self, frames: Vec<Bytes>) -> Delivery {
        let mut state = self.state();
        if state.ended {
            return Delivery::Gone;
        }
        if state.queue.len() + frames.len() > self.0.capacity {
            drop(state);
            self.close_now(CloseCode::SLOW_CONSUMER.frame());
            return Delivery::Slow;
        }
        if frames.is_empty() {
            return Delivery::Queued;
        }
        if state.queue.is_empty() {
            state.since = Some(Instant::now());
        }
        for frame in frames.into_iter().rev() {
            state.queue.push_front(Outbound::Frame(frame));
        }
        drop(state);
        self.0.ready.notify_one();
        Delivery::Queued
    }

    /// Closes after the frames already queued have been written; if the queue is full,
    /// closes at once with the same frame.
    pub fn close_after_queued(&self, frame: Close) {
        if self.push(Outbound::Close(frame.clone()), Instant::now()) == Delivery::Slow {
            self.close_now(frame);
        }
    }

    fn push(&self, item: Outbound, at: Instant) -> Delivery {
        let mut state = self.state();
        if state.ended {
            return Delivery::Gone;
        }
        if state.queue.len() >= self.0.capacity {
            drop(state);
            self.close_now(CloseCode::SLOW_CONSUMER.frame());
            return Delivery::Slow;
        }
        state.queue.push_back(item);
        let first = state.queue.len() == 1;
        if first {
            state.since = Some(at);
        }
        drop(state);
        if first {
            // One wake-up per batch: the session takes everything queued when it runs.
            self.0.ready.notify_one();
        }
        Delivery::Queued
    }

    /// Closes at once, dropping whatever is still queued. The first close requested wins.
    pub fn close_now(&self, frame: Close) {
        self.state().close.get_or_insert(frame);
        self.0.token.cancel();
    }

    /// Resolves when [`Member::close_now`] was called or the server is shutting down.
    pub async fn closing(&self) {
        self.0.token.cancelled().await
    }

    /// Once [`Member::closing`] resolved: the frame requested with [`Member::close_now`],
    /// or `None` when the server is shutting down.
    pub fn requested_close(&self) -> Option<Close> {
        self.state().close.clone()
    }

    /// Resolves when something may have been queued since the last [`Member::take`].
    pub async fn ready(&self) {
        self.0.ready.notified().await
    }

    /// Takes everything queued, leaving the queue empty (and unallocated).
    pub fn take(&self) -> VecDeque<Outbound> {
        self.take_batch().0
    }

    /// Like [`Member::take`], with when the first of the taken items was queued.
    pub fn take_batch(&self) -> (VecDeque<Outbound>, Option<Instant>) {
        let mut state = self.state();
        (std::mem::take(&mut state.queue), state.since.take())
    }

    /// Marks the connection ended: later deliveries report [`Delivery::Gone`] and what was
    /// queued is released.
    pub fn end(&self) {
        let mut state = self.state();
        state.ended = true;
        state.queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Bytes {
        Bytes::from_static(b"x")
    }

    #[tokio::test]
    async fn a_full_queue_closes_with_the_slow_consumer_code() {
        let m = Member::new(1, 1, CancellationToken::new());
        assert_eq!(m.try_deliver(&frame()), Delivery::Queued);
        assert_eq!(m.try_deliver(&frame()), Delivery::Slow);
        m.closing().await;
        assert_eq!(m.requested_close(), Some(CloseCode::SLOW_CONSUMER.frame()));
    }

    #[tokio::test]
    async fn take_empties_the_queue_and_ready_wakes_once_per_batch() {
        let m = Member::new(1, 8, CancellationToken::new());
        m.try_deliver(&frame());
        m.try_deliver(&frame());
        m.ready().await;
        assert_eq!(m.take().len(), 2);
        assert!(m.take().is_empty());
        m.try_deliver(&frame());
        m.ready().await;
        assert_eq!(m.take(), VecDeque::from([Outbound::Frame(frame())]));
    }

    #[tokio::test]
    async fn prepend_goes_first_and_respects_the_bound() {
        let m = Member::new(1, 3, CancellationToken::new());
        m.try_deliver(&Bytes::from_static(b"live"));
        let resumed = vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(m.prepend(resumed), Delivery::Queued);
        m.ready().await;
        let order: Vec<Outbound> = m.take().into_iter().collect();
        let text = |b: &'static [u8]| Outbound::Frame(Bytes::from_static(b));
        assert_eq!(order, [text(b"a"), text(b"b"), text(b"live")]);
        m.try_deliver(&frame());
        assert_eq!(m.prepend(vec![frame(), frame(), frame()]), Delivery::Slow);
        m.closing().await;
        assert_eq!(m.requested_close(), Some(CloseCode::SLOW_CONSUMER.frame()));
    }

    #[tokio::test]
    async fn first_close_wins_shutdown_requests_none_and_ended_is_gone() {
        let parent = CancellationToken::new();
        let child = Member::new(2, 4, parent.child_token());
        parent.cancel();
        child.closing().await;
        assert_eq!(child.requested_close(), None);

        let m = Member::new(1, 4, CancellationToken::new());
        m.close_now(CloseCode::HEARTBEAT_TIMEOUT.frame());
        m.close_now(CloseCode::SLOW_CONSUMER.frame());
        assert_eq!(
            m.requested_close(),
            Some(CloseCode::HEARTBEAT_TIMEOUT.frame())
        );
        m.end();
        assert_eq!(m.try_deliver(&frame()), Delivery::Gone);
    }
}
