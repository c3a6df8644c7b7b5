//! Group and user closes across nodes: the node that got the request publishes it on
//! the control channel, every node (itself included) closes its own connections and
//! answers how many, and the requester adds up the answers of every live node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::broker::BrokerError;
use crate::protocol::{Close, GroupName, UserId};

/// How long the requester waits for the other nodes' answers.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// A message on the control channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Close every local member of `group`.
    CloseGroup {
        /// Answers carry it back.
        id: String,
        /// The group to close.
        group: GroupName,
        /// Code and reason.
        close: Close,
    },
    /// Close every local connection of `user`.
    CloseUser {
        /// Answers carry it back.
        id: String,
        /// The user whose connections close.
        user: UserId,
        /// Code and reason.
        close: Close,
    },
    /// One node's answer: how many connections it closed.
    Closed {
        /// The request answered.
        id: String,
        /// Connections closed on that node.
        closed: usize,
    },
}

/// Requests in flight, waiting for answers.
#[derive(Default)]
pub struct Control {
    waiting: Mutex<HashMap<String, mpsc::UnboundedSender<usize>>>,
}

impl Control {
    /// Hands an answer to the request waiting for it, if it is this node's.
    pub fn answer(&self, id: &str, closed: usize) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = waiting.get(id) {
            let _ = tx.send(closed);
        }
    }

    /// Publishes `request` (built around a fresh id) and sums the answers of every node
    /// that received it (Redis says how many did), waiting at most [`ANSWER_WAIT`].
    pub async fn survey(
        &self,
        request: impl FnOnce(String) -> Message,
        publish: impl AsyncFnOnce(String) -> Result<usize, BrokerError>,
    ) -> Result<usize, BrokerError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), tx);
        let json = serde_json::to_string(&request(id.clone())).unwrap_or_default();
        let published = publish(json).await;
        let mut total = 0;
        if let Ok(expected) = published {
            let _ = tokio::time::timeout(ANSWER_WAIT, async {
                for _ in 0..expected {
                    match rx.recv().await {
                        Some(n) => total += n,
                        None => break,
                    }
                }
            })
            .await;
        }
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        published.map(|_| total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let close = crate::protocol::close::application_close(4403, "banned").unwrap();
        let msg = Message::CloseUser {
            id: "x".into(),
            user: UserId::parse("ana").unwrap(),
            close,
        };
        let json = serde_json::to_string(&msg).unwrap();
        let back: Message = serde_json::from_str(&json).unwrap();
        assert!(
            matches!(back, Message::CloseUser { ref user, .. } if user.as_str() == "ana"),
            "{json}"
        );
    }
}
