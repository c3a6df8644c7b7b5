//! The session's wake-up: one waiter (the connection's task) and one stored permit.
//!
//! Does what `tokio::sync::Notify::notify_one` did for a member, smaller: `Notify` keeps
//! a list of waiters behind a mutex (32 bytes in every member) and its `Notified` future
//! is 64 bytes, which every idle session task carried in its `select!`. A member has
//! exactly one waiter, so a waker slot and a flag do: the future waiting on it is a
//! reference, and a wake-up is a store and an atomic swap instead of a lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A wake-up for one task, remembered if it is not waiting yet (like a `Notify` permit:
/// any number of wake-ups before the task looks count as one).
#[derive(Debug, Default)]
pub(super) struct Signal {
    waker: AtomicWaker,
    permit: AtomicBool,
}

impl Signal {
    /// Wakes the waiting task, or lets its next [`Signal::poll_wait`] return at once.
    pub(super) fn notify(&self) {
        self.permit.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready (consuming the permit) once [`Signal::notify`] was called since the last
    /// time it was; else registers `cx`'s waker.
    pub(super) fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.permit.swap(false, Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notify between the check and the registration found no waker to wake.
        if self.permit.swap(false, Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
