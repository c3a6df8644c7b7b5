//! One connection as the hub sees it: an id, a bounded outbound queue and a way to close it.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::protocol::CloseCode;

/// Identifies a connection within this node.
pub type ConnId = u64;

/// The hub's handle to one connection. Cheap to clone: a queue sender and an `Arc`.
#[derive(Clone, Debug)]
pub struct Member {
    id: ConnId,
    /// Bounded so that a client which stops reading costs at most `--send-queue` frames;
    /// `try_send` keeps fan-out from ever waiting on one slow connection.
    outbox: mpsc::Sender<Message>,
    closer: Arc<Closer>,
}

/// How the session learns it must close now, and with which frame.
#[derive(Debug)]
struct Closer {
    /// First close wins; `None` with a cancelled token means the server is shutting down.
    frame: Mutex<Option<CloseFrame>>,
    /// A child of the server's shutdown token, so one `select!` arm covers both.
    token: CancellationToken,
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
    /// Creates the handle for connection `id`; `token` should be a child of the shutdown token.
    pub fn new(id: ConnId, outbox: mpsc::Sender<Message>, token: CancellationToken) -> Self {
        let closer = Arc::new(Closer {
            frame: Mutex::new(None),
            token,
        });
        Self { id, outbox, closer }
    }

    /// The connection id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Queues a shared frame without waiting. A full queue closes the connection with
    /// [`CloseCode::SLOW_CONSUMER`]: herald never skips a frame silently.
    pub fn try_deliver(&self, frame: &Message) -> Delivery {
        match self.outbox.try_send(frame.clone()) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_now(CloseCode::SLOW_CONSUMER.frame());
                Delivery::Slow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// Closes after the frames already queued have been written; if the queue is full,
    /// closes at once with the same frame.
    pub fn close_after_queued(&self, frame: CloseFrame) {
        if let Err(e) = self.outbox.try_send(Message::Close(Some(frame))) {
            if let Message::Close(Some(frame)) = e.into_inner() {
                self.close_now(frame);
            }
        }
    }

    /// Closes at once, dropping whatever is still queued. The first close requested wins.
    pub fn close_now(&self, frame: CloseFrame) {
        // A poisoned lock only means another closer panicked mid-assignment; the value is
        // still a plain Option, so take it over rather than propagate the panic.
        let mut slot = self.closer.frame.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(frame);
        }
        drop(slot);
        self.closer.token.cancel();
    }

    /// Resolves when [`Member::close_now`] was called or the server is shutting down.
    pub async fn closing(&self) {
        self.closer.token.cancelled().await
    }

    /// Once [`Member::closing`] resolved: the frame requested with [`Member::close_now`],
    /// or `None` when the server is shutting down.
    pub fn requested_close(&self) -> Option<CloseFrame> {
        self.closer
            .frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(queue: usize) -> (Member, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(queue);
        (Member::new(1, tx, CancellationToken::new()), rx)
    }

    #[tokio::test]
    async fn a_full_queue_closes_with_the_slow_consumer_code() {
        let (m, _rx) = member(1);
        let frame = Message::text("x");
        assert_eq!(m.try_deliver(&frame), Delivery::Queued);
        assert_eq!(m.try_deliver(&frame), Delivery::Slow);
        m.closing().await;
        assert_eq!(m.requested_close(), Some(CloseCode::SLOW_CONSUMER.frame()));
    }

    #[tokio::test]
    async fn first_close_wins_and_shutdown_requests_no_frame() {
        let (m, rx) = member(4);
        let parent = CancellationToken::new();
        let tx = m.outbox.clone();
        let child = Member::new(2, tx, parent.child_token());
        parent.cancel();
        child.closing().await;
        assert_eq!(child.requested_close(), None);

        m.close_now(CloseCode::HEARTBEAT_TIMEOUT.frame());
        m.close_now(CloseCode::SLOW_CONSUMER.frame());
        assert_eq!(
            m.requested_close(),
            Some(CloseCode::HEARTBEAT_TIMEOUT.frame())
        );
        drop(rx);
        assert_eq!(m.try_deliver(&Message::text("x")), Delivery::Gone);
    }
}
