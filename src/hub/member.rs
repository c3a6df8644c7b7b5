//! One connection as the hub sees it: an id, its ordered output (the socket and a bounded
//! queue, see [`super::output`]) and a way to close it.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::output::{Flushed, Outbound, Output};
use super::signal::Signal;
use crate::protocol::{Close, CloseCode, UserId};

/// The first byte of a server's close frame (FIN, opcode 8, unmasked). tungstenite hands
/// each frame to its writer whole, from the header (it keeps no write buffer, see
/// `transport::upgrade`), so a write starting with it is a close frame.
const CLOSE_FRAME: u8 = 0x88;

/// Identifies a connection within this node.
pub type ConnId = u64;

/// The hub's handle to one connection. Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct Member(Arc<Shared>);

// `repr(C)`, `state` first and its hot fields first: what a drain's write reads (the
// lock word, the flags, the queue, the socket) lies in about one cache line, which
// `Member::warm` loads ahead.
#[derive(Debug)]
#[repr(C)]
struct Shared {
    /// One plain mutex around the socket and its backlog: every write to the socket
    /// happens under it, which is what keeps frames whole and in order. An idle
    /// connection's backlog owns no memory (a channel would preallocate a block).
    state: Mutex<State>,
    id: ConnId,
    /// The authenticated user (`sub`); `None` when auth is off.
    user: Option<UserId>,
    /// Most frames queued at once (`--send-queue`).
    capacity: usize,
    /// Wakes the session when something was queued that it must finish writing, or when
    /// [`Member::close_now`] was called (see [`Member::close_requested`]).
    ready: Signal,
    /// The server's shutdown token, shared by every member. Not a child token per member:
    /// a child allocates a tree node (a mutex, a `Notify`, a slot in the parent's list),
    /// which every idle connection would carry; a close request goes through `ready`.
    shutdown: CancellationToken,
}

#[derive(Debug, Default)]
#[repr(C)]
struct State {
    /// The session has ended; nothing more is delivered.
    ended: bool,
    /// The session is handling a client frame (a subscribe may join and resume): frames
    /// are not written meanwhile, so its replies and a resume's replay still go before them.
    held: bool,
    /// The member is on a drain's list: its queue is written when the drain runs.
    scheduled: bool,
    out: Output,
    /// First close requested wins; `None` with a cancelled shutdown token means shutdown.
    close: Option<Close>,
    /// The socket's peer address, read when it was attached: after a reset the socket no
    /// longer knows it, and the connection's last log line wants it most.
    remote: Option<std::net::SocketAddr>,
}

/// What happened to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued, and the member must be handed to a drain (see `super::drain`): its queue
    /// went from empty to non-empty and its socket is free to write.
    Scheduled,
    /// Queued for the connection (behind frames already scheduled, or for its session).
    Queued,
    /// Written to the socket whole, at once (see [`Member::try_write_at`]).
    Written,
    /// The queue was full: the connection is being closed as a slow consumer.
    Slow,
    /// The connection has already ended.
    Gone,
}

impl Member {
    /// Creates the handle for connection `id` with a queue of `capacity` frames; `shutdown`
    /// is the server's shutdown token (shared, not a child).
    pub fn new(id: ConnId, capacity: usize, shutdown: CancellationToken) -> Self {
        Self::for_user(id, capacity, shutdown, None)
    }

    /// Like [`Member::new`], for a connection authenticated as `user`.
    pub fn for_user(
        id: ConnId,
        capacity: usize,
        shutdown: CancellationToken,
        user: Option<UserId>,
    ) -> Self {
        let state = Mutex::new(State::default());
        Self(Arc::new(Shared {
            id,
            user,
            capacity,
            state,
            ready: Signal::default(),
            shutdown,
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

    /// Gives the member its socket: from now on the hub's drain writes its frames.
    pub fn attach(&self, socket: TcpStream) {
        let mut state = self.state();
        state.remote = socket.peer_addr().ok();
        state.out.socket = Some(socket);
        let queued = !state.out.queue.is_empty();
        drop(state);
        if queued {
            self.0.ready.notify();
        }
    }

    /// The socket's peer address, once the member has been given its socket.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.state().remote
    }

    /// Gives up the socket (closing it); reads then see the end of the stream.
    pub fn release(&self) {
        self.state().out.socket = None;
    }

    /// Queues a shared frame without waiting, for the session to write (outside a
    /// fan-out, with no drain to hand the member to). Never [`Delivery::Scheduled`].
    pub fn try_deliver(&self, frame: &Bytes) -> Delivery {
        self.deliver(frame, Instant::now(), false)
    }

    /// Queues a frame published at `at` (one clock read per fan-out). The first frame
    /// queued for an attached socket reports [`Delivery::Scheduled`]: the caller hands the
    /// member to a drain, which writes everything queued by then with one vectored write
    /// (no task wake-up per delivery). A full queue closes the connection with
    /// [`CloseCode::SLOW_CONSUMER`]: herald never skips a frame silently.
    pub fn try_deliver_at(&self, frame: &Bytes, at: Instant) -> Delivery {
        self.deliver(frame, at, true)
    }

    /// Reads the member's lock word without taking the lock: a drain touches several
    /// members this way before writing to them one by one, so that their cache misses
    /// overlap instead of stalling each write in turn.
    pub(super) fn warm(&self) {
        std::hint::black_box(self.0.state.is_poisoned());
    }

    /// Writes a frame published at `at` straight to the socket when nothing is queued,
    /// held or scheduled for it, else queues it (see [`Member::try_write_all`]).
    pub fn try_write_at(&self, frame: &Bytes, at: Instant) -> Delivery {
        self.try_write_all(std::slice::from_ref(frame), at).0
    }

    /// Writes `frames` (in order, the first published at `at`) straight to the socket
    /// with vectored writes when nothing is queued, held or scheduled for it; else queues
    /// them behind what is, for whoever writes that (a drain or the session), as long
    /// as they fit the queue. Returns what happened and how many frames the socket took
    /// whole: [`Delivery::Written`] when it took them all; what it does not take is left
    /// to the session, which is woken. Frames that do not fit the queue close the
    /// connection as a slow consumer ([`Delivery::Slow`]), as a full queue does.
    pub fn try_write_all(&self, frames: &[Bytes], at: Instant) -> (Delivery, usize) {
        let mut state = self.state();
        if state.ended {
            return (Delivery::Gone, 0);
        }
        let free = state.out.queue.is_empty() && !state.scheduled && !state.held;
        if !free || state.out.socket.is_none() {
            if state.out.queue.len() + frames.len() > self.0.capacity {
                return (self.refuse_slow(state), 0);
            }
            // Whoever writes what is queued (the drain that scheduled it, or the
            // session, already woken for it) writes these too; only a first frame held
            // or waiting for the socket wakes the session.
            let wake = state.out.queue.is_empty() && !state.scheduled;
            for frame in frames {
                state.out.push_back(Outbound::Frame(frame.clone()), at);
            }
            drop(state);
            if wake {
                self.0.ready.notify();
            }
            return (Delivery::Queued, 0);
        }
        let (written, queued) = state.out.write_through(frames, at);
        if let Ok(false) = queued {
            // The common case reads nothing more of the member (`capacity` is on
            // another cache line).
            return (Delivery::Written, written);
        }
        let over = state.out.queue.len() > self.0.capacity;
        drop(state);
        if over {
            self.close_now(CloseCode::SLOW_CONSUMER.frame());
            return (Delivery::Slow, written);
        }
        self.0.ready.notify();
        (Delivery::Queued, written)
    }

    fn deliver(&self, frame: &Bytes, at: Instant, drained: bool) -> Delivery {
        self.deliver_locked(self.state(), frame, at, drained)
    }

    fn deliver_locked(
        &self,
        mut state: MutexGuard<'_, State>,
        frame: &Bytes,
        at: Instant,
        drained: bool,
    ) -> Delivery {
        if state.ended {
            return Delivery::Gone;
        }
        if state.out.queue.len() >= self.0.capacity {
            return self.refuse_slow(state);
        }
        let first = state.out.queue.is_empty();
        state.out.push_back(Outbound::Frame(frame.clone()), at);
        if !first || state.scheduled {
            // Behind frames a drain or the session is already going to write.
            return Delivery::Queued;
        }
        if drained && state.out.socket.is_some() && !state.held {
            state.scheduled = true;
            return Delivery::Scheduled;
        }
        drop(state);
        self.0.ready.notify();
        Delivery::Queued
    }

    /// Refuses what does not fit the queue (`--send-queue`): the connection closes as a
    /// slow consumer, since herald never skips a frame silently.
    fn refuse_slow(&self, state: MutexGuard<'_, State>) -> Delivery {
        drop(state);
        self.close_now(CloseCode::SLOW_CONSUMER.frame());
        Delivery::Slow
    }

    /// A drain's turn: writes what is queued without waiting. What the socket does not
    /// take (or a queued close) is left to the session, which is woken for it. Returns
    /// the notification frames written and when the first of them was published.
    pub fn flush_scheduled(&self) -> (usize, Option<Instant>) {
        let mut state = self.state();
        state.scheduled = false;
        if state.held || state.ended {
            // `unhold` wakes the session; an ended one discards the queue.
            return (0, None);
        }
        let flushed = state.out.write_queued(false);
        let backlog = !state.out.queue.is_empty();
        drop(state);
        if backlog || flushed.is_err() {
            self.0.ready.notify();
        }
        flushed.map_or((0, None), |f| (f.frames, f.since))
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
        if state.out.queue.len() + frames.len() > self.0.capacity {
            return self.refuse_slow(state);
        }
        if frames.is_empty() {
            return Delivery::Queued;
        }
        state.out.prepend(frames);
        drop(state);
        self.0.ready.notify();
        Delivery::Queued
    }

    /// Closes after the frames already queued have been written; if the queue is full,
    /// closes at once with the same frame.
    pub fn close_after_queued(&self, frame: Close) {
        let state = self.state();
        if state.ended {
            return;
        }
        if self.push(state, Outbound::Close(frame.clone()), Instant::now()) == Delivery::Slow {
            self.close_now(frame);
        }
    }

    /// Queues a close (or another item the session must see) and wakes the session.
    fn push(&self, mut state: MutexGuard<'_, State>, item: Outbound, at: Instant) -> Delivery {
        if state.out.queue.len() >= self.0.capacity {
            return self.refuse_slow(state);
        }
        state.out.push_back(item, at);
        drop(state);
        self.0.ready.notify();
        Delivery::Queued
    }

    /// Writes tungstenite's bytes (a reply, pong or close frame) in order with the
    /// notifications. A client that makes herald queue more than the send queue holds
    /// (pings it never reads the answers to) is closed as a slow consumer.
    pub fn reply(&self, buf: &[u8]) -> io::Result<()> {
        let mut state = self.state();
        if buf.first() == Some(&CLOSE_FRAME) && !state.ended {
            // Nothing may follow a close frame (tungstenite's echo of a client's close
            // goes out before the session ends the member): end it now, so no drain
            // writes the queued notifications after it.
            state.ended = true;
            state.out.drop_unstarted();
        }
        let queued = state.out.reply(buf)?;
        let over = state.out.queue.len() > self.0.capacity;
        drop(state);
        if over {
            self.close_now(CloseCode::SLOW_CONSUMER.frame());
        }
        if queued {
            self.0.ready.notify();
        }
        Ok(())
    }

    /// The session's write: what is queued until the socket pushes back, up to a queued
    /// close, which it returns (see [`Flushed`]).
    pub fn write_queued(&self) -> io::Result<Flushed> {
        self.state().out.write_queued(true)
    }

    /// Polls for the socket to accept writes again.
    pub fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state().out.poll_writable(cx)
    }

    /// Reads what the client sent (tungstenite's reads, through the session's adapter).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.state().out.poll_read(cx, buf)
    }

    /// Keeps frames queued (no drain writes them) until [`Member::unhold`].
    pub fn hold(&self) {
        self.state().held = true;
    }

    /// Ends [`Member::hold`]; wakes the session if frames were queued meanwhile.
    pub fn unhold(&self) {
        let mut state = self.state();
        state.held = false;
        let queued = !state.out.queue.is_empty();
        drop(state);
        if queued {
            self.0.ready.notify();
        }
    }

    /// Closes at once, dropping whatever is still queued. The first close requested wins.
    /// Wakes the session through [`Member::ready`]; it checks [`Member::close_requested`]
    /// whenever it wakes.
    pub fn close_now(&self, frame: Close) {
        self.state().close.get_or_insert(frame);
        self.0.ready.notify();
    }

    /// Whether [`Member::close_now`] was called.
    pub fn close_requested(&self) -> bool {
        self.state().close.is_some()
    }

    /// Resolves when the server is shutting down.
    pub fn shutdown(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.0.shutdown.cancelled()
    }

    /// The frame requested with [`Member::close_now`], or `None` when the session is
    /// closing because the server is shutting down.
    pub fn requested_close(&self) -> Option<Close> {
        self.state().close.clone()
    }

    /// Resolves when something may have been queued since the last write, or a close was
    /// requested (see [`Member::close_requested`]).
    /// Only the connection's session waits on it (one waiter at a time).
    pub fn ready(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.0.ready.poll_wait(cx))
    }

    /// Wakes the session as if something had been queued (a wake-up it consumed while
    /// busy, handed back so nothing queued meanwhile is left unwritten).
    pub fn wake(&self) {
        self.0.ready.notify();
    }

    /// Takes everything queued, leaving the queue empty (and unallocated).
    pub fn take(&self) -> VecDeque<Outbound> {
        self.state().out.take()
    }

    /// Drops the queued frames that have not started (a partly written one must still be
    /// completed before a close frame); returns how many were dropped.
    pub fn drop_unstarted(&self) -> usize {
        self.state().out.drop_unstarted()
    }

    /// Marks the connection ended: later deliveries report [`Delivery::Gone`] and queued
    /// frames not yet started are released. Returns how many were.
    pub fn end(&self) -> usize {
        let mut state = self.state();
        state.ended = true;
        state.out.drop_unstarted()
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
        m.ready().await;
        assert!(m.close_requested());
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
        m.ready().await;
        assert!(m.close_requested());
        assert_eq!(m.requested_close(), Some(CloseCode::SLOW_CONSUMER.frame()));
    }

    #[tokio::test]
    async fn first_close_wins_shutdown_requests_none_and_ended_is_gone() {
        let shutdown = CancellationToken::new();
        let member = Member::new(2, 4, shutdown.clone());
        shutdown.cancel();
        member.shutdown().await;
        assert!(!member.close_requested());
        assert_eq!(member.requested_close(), None);

        let m = Member::new(1, 4, CancellationToken::new());
        assert!(!m.close_requested());
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

/// The drain and session writes on real sockets: what reaches the client, byte for byte.
#[cfg(test)]
mod socket_tests {
    use std::future::poll_fn;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A connected pair: (herald's end, the client's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    /// A fan-out's delivery (the hub hands `Scheduled` members to a drain; here the test
    /// plays the drain with `flush_scheduled`).
    fn fan(m: &Member, frame: &Bytes) -> Delivery {
        m.try_deliver_at(frame, Instant::now())
    }

    /// Larger than any socket buffer, so the socket takes only part of it at once.
    fn huge() -> Bytes {
        Bytes::from((0..16 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }

    /// What the session does: writes the queue whenever the socket is writable.
    async fn finish(m: &Member) {
        while !m.write_queued().unwrap().done {
            poll_fn(|cx| m.poll_writable(cx)).await.unwrap();
        }
    }

    /// Reads everything the client gets until herald releases the socket.
    fn read_all(mut client: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        })
    }

    #[tokio::test]
    async fn the_first_frame_schedules_and_one_flush_writes_the_burst() {
        let (server, client) = pair().await;
        let m = Member::new(1, 4, CancellationToken::new());
        assert_eq!(
            fan(&m, &Bytes::from_static(b"early")),
            Delivery::Queued,
            "no socket yet"
        );
        m.take();
        m.attach(server);
        assert_eq!(fan(&m, &Bytes::from_static(b"one")), Delivery::Scheduled);
        assert_eq!(fan(&m, &Bytes::from_static(b"two")), Delivery::Queued);
        assert_eq!(m.flush_scheduled().0, 2);
        assert!(m.take().is_empty(), "the socket took both");
        assert_eq!(fan(&m, &Bytes::from_static(b"3")), Delivery::Scheduled);
        m.flush_scheduled();
        m.release();
        assert_eq!(read_all(client).await.unwrap(), b"onetwo3");
    }

    #[tokio::test]
    async fn a_write_through_goes_out_at_once_and_its_unwritten_rest_stays_first() {
        let (server, client) = pair().await;
        let m = Member::new(1, 8, CancellationToken::new());
        let at = Instant::now();
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"early"), at),
            Delivery::Queued,
            "no socket yet: queued for the session"
        );
        m.take();
        m.attach(server);
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"one"), at),
            Delivery::Written
        );
        assert!(m.take().is_empty(), "nothing left queued");
        let huge = huge();
        assert_eq!(
            m.try_write_at(&huge, at),
            Delivery::Queued,
            "only part fits"
        );
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), m.ready());
        woken.await.expect("the session is woken to finish it");
        // Behind the unwritten rest: queued, never written past it.
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"two"), at),
            Delivery::Queued
        );
        m.reply(b"pong").unwrap();
        let reader = read_all(client);
        finish(&m).await;
        m.release();
        let got = reader.await.unwrap();
        let mut want = b"one".to_vec();
        want.extend_from_slice(&huge);
        want.extend_from_slice(b"pongtwo");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
    }

    #[tokio::test]
    async fn a_write_through_waits_behind_a_hold_a_schedule_and_a_full_queue() {
        let (server, client) = pair().await;
        let m = Member::new(1, 2, CancellationToken::new());
        m.attach(server);
        let at = Instant::now();
        m.hold();
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"a"), at),
            Delivery::Queued
        );
        m.reply(b"subscribed").unwrap();
        m.unhold();
        finish(&m).await;
        assert_eq!(fan(&m, &Bytes::from_static(b"b")), Delivery::Scheduled);
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"c"), at),
            Delivery::Queued,
            "behind the frame a drain is to write"
        );
        assert_eq!(
            m.try_write_at(&Bytes::from_static(b"d"), at),
            Delivery::Slow,
            "the queue bound holds for writes through too"
        );
        assert!(m.close_requested());
        m.flush_scheduled();
        m.release();
        assert_eq!(read_all(client).await.unwrap(), b"subscribedabc");
    }

    #[tokio::test]
    async fn a_partly_written_frame_completes_before_replies_and_later_frames() {
        let (server, client) = pair().await;
        let m = Member::new(1, 8, CancellationToken::new());
        m.attach(server);
        let huge = huge();
        assert_eq!(fan(&m, &huge), Delivery::Scheduled);
        assert_eq!(m.flush_scheduled().0, 0, "the socket took only part of it");
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), m.ready());
        woken.await.expect("the session is woken to finish it");
        assert_eq!(fan(&m, &Bytes::from_static(b"live")), Delivery::Queued);
        // tungstenite's pong and a resume's replay go after the partly written frame (never
        // inside it) and before the frames not yet started.
        m.reply(b"pong").unwrap();
        assert_eq!(
            m.prepend(vec![Bytes::from_static(b"replay")]),
            Delivery::Queued
        );
        let reader = read_all(client);
        finish(&m).await;
        m.release();
        let got = reader.await.unwrap();
        let mut want = huge.to_vec();
        want.extend_from_slice(b"pongreplaylive");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes out of order");
    }

    #[tokio::test]
    async fn a_close_drops_frames_not_started_but_completes_a_partly_written_one() {
        let (server, client) = pair().await;
        let m = Member::new(1, 8, CancellationToken::new());
        m.attach(server);
        let huge = huge();
        fan(&m, &huge);
        m.flush_scheduled();
        fan(&m, &Bytes::from_static(b"dropped"));
        assert_eq!(m.end(), 1);
        assert_eq!(fan(&m, &Bytes::from_static(b"late")), Delivery::Gone);
        m.reply(b"close").unwrap();
        let reader = read_all(client);
        finish(&m).await;
        m.release();
        let mut want = huge.to_vec();
        want.extend_from_slice(b"close");
        assert!(reader.await.unwrap() == want);
    }

    #[tokio::test]
    async fn a_frame_queued_outside_a_fan_out_wakes_the_session() {
        let (server, client) = pair().await;
        let m = Member::new(1, 4, CancellationToken::new());
        m.attach(server);
        let frame = Bytes::from_static(b"subscribed");
        assert_eq!(m.try_deliver(&frame), Delivery::Queued);
        let woken = tokio::time::timeout(std::time::Duration::from_secs(5), m.ready());
        woken.await.expect("the session is woken to write it");
        finish(&m).await;
        m.release();
        assert_eq!(read_all(client).await.unwrap(), b"subscribed");
    }

    #[tokio::test]
    async fn nothing_is_written_after_a_close_frame() {
        let (server, client) = pair().await;
        let m = Member::new(1, 8, CancellationToken::new());
        m.attach(server);
        m.hold();
        fan(&m, &Bytes::from_static(b"queued"));
        m.reply(&[CLOSE_FRAME, 0]).unwrap();
        assert_eq!(fan(&m, &Bytes::from_static(b"late")), Delivery::Gone);
        m.unhold();
        assert_eq!(m.flush_scheduled().0, 0);
        finish(&m).await;
        m.release();
        assert_eq!(read_all(client).await.unwrap(), [CLOSE_FRAME, 0]);
    }

    #[tokio::test]
    async fn a_held_member_queues_and_its_replies_go_first() {
        let (server, client) = pair().await;
        let m = Member::new(1, 8, CancellationToken::new());
        m.attach(server);
        m.hold();
        assert_eq!(fan(&m, &Bytes::from_static(b"live")), Delivery::Queued);
        m.reply(b"subscribed").unwrap();
        m.unhold();
        m.ready().await;
        finish(&m).await;
        m.release();
        assert_eq!(read_all(client).await.unwrap(), b"subscribedlive");
    }
}
