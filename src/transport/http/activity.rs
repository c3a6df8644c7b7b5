//! What one plain-HTTP connection is doing, shared by its socket wrapper, its request
//! handler and its task: waiting for a request (evictable, deadlines apply), busy with
//! one, or handed over to a WebSocket session.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Waker;

use futures_util::task::AtomicWaker;

use tokio_util::sync::CancellationToken;

use super::slots::{Slot, Slots, Waiter};
use crate::metrics::{HttpClose, HttpConnectionMetrics};

/// Waiting for (or reading) a request head.
const WAITING: u8 = 0;
/// A request is being handled.
const BUSY: u8 = 1;
/// Upgraded to a WebSocket: no HTTP deadlines, no HTTP slot.
const UPGRADED: u8 = 2;

/// The phase of a connection, as its socket wrapper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Between requests or inside a request head.
    Waiting,
    /// Handling a request (its body is read under the body timeout).
    Busy,
    /// A WebSocket now; the session sets its own deadlines.
    Upgraded,
}

/// One connection's shared bookkeeping.
pub(super) struct Activity {
    phase: AtomicU8,
    /// Requests answered so far: a change tells the socket wrapper a new wait began.
    answered: AtomicU64,
    /// 1 + the number (see [`Activity::begin_request`]) of the latest request whose body
    /// was read to its end; 0 for none. A number rather than a flag, so that a body left
    /// over from an earlier request cannot speak for a later one.
    body_read: AtomicU64,
    /// A read that went pending while a request was handled, woken by the answer.
    reader: AtomicWaker,
    /// Cancelled to evict this connection while it waits (see [`Slots`]).
    pub(super) evict: CancellationToken,
    slots: Arc<Slots>,
    /// This connection's entry in the slots' waiting list.
    waiter: Arc<Waiter>,
    /// The `--max-http-connections` slot; given back when the connection ends or
    /// becomes a WebSocket (those are counted by `--max-connections`).
    permit: Mutex<Option<Slot>>,
    /// Which read deadline passed, if one did (set by the socket wrapper).
    deadline_passed: OnceLock<HttpClose>,
    /// Where the connection is counted when herald cuts it off; kept here so a request
    /// reaches it without a clone of its own (each is a few reference counts).
    pub(super) metrics: HttpConnectionMetrics,
}

impl Activity {
    /// A new connection holding `permit`, waiting for its first request, counted in
    /// `metrics`.
    pub(super) fn new(
        slots: Arc<Slots>,
        permit: Slot,
        metrics: HttpConnectionMetrics,
    ) -> Arc<Self> {
        let evict = CancellationToken::new();
        let waiter = Waiter::new(evict.clone());
        slots.list(&waiter);
        Arc::new(Self {
            phase: AtomicU8::new(WAITING),
            answered: AtomicU64::new(0),
            body_read: AtomicU64::new(0),
            reader: AtomicWaker::new(),
            evict,
            slots,
            waiter,
            permit: Mutex::new(Some(permit)),
            deadline_passed: OnceLock::new(),
            metrics,
        })
    }

    /// The current phase.
    pub(super) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            WAITING => Phase::Waiting,
            BUSY => Phase::Busy,
            _ => Phase::Upgraded,
        }
    }

    /// How many requests were answered; changes each time a new wait begins.
    pub(super) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Wakes `waker` when the current request is answered.
    pub(super) fn wake_reader_on_answer(&self, waker: &Waker) {
        self.reader.register(waker);
    }

    /// A read deadline passed (`HeaderTimeout` or `IdleTimeout`); the connection ends.
    pub(super) fn deadline_passed(&self, which: HttpClose) {
        let _ = self.deadline_passed.set(which);
    }

    /// The read deadline that ended this connection, if one did.
    pub(super) fn passed_deadline(&self) -> Option<HttpClose> {
        self.deadline_passed.get().copied()
    }

    /// A request head arrived: no longer evictable until it is answered. Returns the
    /// request's number on this connection (0 for the first).
    pub(super) fn begin_request(&self) -> u64 {
        self.phase.store(BUSY, Ordering::Release);
        self.waiter.busy();
        self.answered()
    }

    /// Request `request`'s body was read to its end.
    pub(super) fn body_read(&self, request: u64) {
        self.body_read.store(request + 1, Ordering::Release);
    }

    /// Whether request `request`'s body was read to its end.
    pub(super) fn was_body_read(&self, request: u64) -> bool {
        self.body_read.load(Ordering::Acquire) == request + 1
    }

    /// The request is answered. After a `101` the connection is a WebSocket and gives
    /// its HTTP slot back; otherwise it waits for the next request.
    pub(super) fn end_request(&self, upgraded: bool) {
        if upgraded {
            self.phase.store(UPGRADED, Ordering::Release);
            self.slots.unlist(&self.waiter);
            lock(&self.permit).take();
        } else {
            self.answered.fetch_add(1, Ordering::AcqRel);
            self.phase.store(WAITING, Ordering::Release);
            self.slots.wait_again(&self.waiter);
            self.reader.wake();
        }
    }

    /// The connection ended: leave the waiting list (the permit goes with the last `Arc`,
    /// but it is given back here already so a new connection need not wait for that).
    pub(super) fn end(&self) {
        self.slots.unlist(&self.waiter);
        lock(&self.permit).take();
    }
}

/// Locks `m`; the data behind these locks stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
