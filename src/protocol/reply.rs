//! The replies of `POST /notify` and `POST /notify/batch` (`openapi.yaml`
//! `NotifyResponse`, `NotifyBatchResponse`), written straight as JSON.
//!
//! Every field is a hex id, an integer or a validated group name, none of which needs
//! escaping in JSON, so the text is assembled directly: no intermediate structs, no
//! serializer, and one allocation of the right size for a whole reply.

use crate::id;

use super::{GroupName, Offset};

/// One accepted notification's reply, as the handler learns it: its id, and what each
/// target group's publish did.
#[derive(Debug)]
pub enum Accepted<'a> {
    /// The `group` form: `{"id","offset","recipients"}`.
    Single {
        /// The notification's id.
        id: [u8; id::LEN],
        /// The offset it got in its group.
        offset: Offset,
        /// What `recipients` counts (see `broker`).
        recipients: usize,
    },
    /// The `groups` form: `{"id","recipients","groups":[{"group","offset","recipients"}]}`,
    /// `recipients` summed over the groups.
    Groups {
        /// The notification's id.
        id: [u8; id::LEN],
        /// Each target group with its offset and recipients, in request order.
        groups: Vec<(&'a GroupName, Offset, usize)>,
    },
}

/// Digits in `n`, written in decimal.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

impl Accepted<'_> {
    /// The reply's exact length in bytes, so its buffer is allocated once at its size
    /// (and becomes a response body without another allocation).
    pub fn json_len(&self) -> usize {
        // {"id":"…","offset":N,"recipients":N}
        const SINGLE: usize = r#"{"id":"","offset":,"recipients":}"#.len() + id::LEN;
        // {"id":"…","recipients":N,"groups":[…]}, items {"group":"…","offset":N,"recipients":N}
        // separated by commas.
        const GROUPS: usize = r#"{"id":"","recipients":,"groups":[]}"#.len() + id::LEN;
        const ITEM: usize = r#"{"group":"","offset":,"recipients":}"#.len();
        match self {
            Self::Single {
                offset, recipients, ..
            } => SINGLE + digits(*offset) + digits(*recipients as u64),
            Self::Groups { groups, .. } => {
                let items: usize = groups
                    .iter()
                    .map(|(g, offset, recipients)| {
                        ITEM + g.as_str().len() + digits(*offset) + digits(*recipients as u64)
                    })
                    .sum();
                let commas = groups.len().saturating_sub(1);
                GROUPS + digits(self.recipients() as u64) + items + commas
            }
        }
    }

    /// `recipients`: summed over the groups in the `groups` form.
    fn recipients(&self) -> usize {
        match self {
            Self::Single { recipients, .. } => *recipients,
            Self::Groups { groups, .. } => groups.iter().map(|(.., r)| r).sum(),
        }
    }

    /// Appends the reply's JSON to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        match self {
            Self::Single {
                id,
                offset,
                recipients,
            } => {
                out.extend_from_slice(br#"{"id":""#);
                out.extend_from_slice(id);
                out.extend_from_slice(br#"","offset":"#);
                out.extend_from_slice(num.format(*offset).as_bytes());
                out.extend_from_slice(br#","recipients":"#);
                out.extend_from_slice(num.format(*recipients).as_bytes());
                out.push(b'}');
            }
            Self::Groups { id, groups } => {
                out.extend_from_slice(br#"{"id":""#);
                out.extend_from_slice(id);
                out.extend_from_slice(br#"","recipients":"#);
                out.extend_from_slice(num.format(self.recipients()).as_bytes());
                out.extend_from_slice(br#","groups":["#);
                for (i, (group, offset, recipients)) in groups.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    // A validated name needs no escaping (see `name`).
                    out.extend_from_slice(br#"{"group":""#);
                    out.extend_from_slice(group.as_str().as_bytes());
                    out.extend_from_slice(br#"","offset":"#);
                    out.extend_from_slice(num.format(*offset).as_bytes());
                    out.extend_from_slice(br#","recipients":"#);
                    out.extend_from_slice(num.format(*recipients).as_bytes());
                    out.push(b'}');
                }
                out.extend_from_slice(b"]}");
            }
        }
    }

    /// The `POST /notify` reply body.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json_len());
        self.write(&mut out);
        out
    }
}

/// The `POST /notify/batch` reply body, `{"results":[…]}`, one `POST /notify` reply per
/// item in item order.
pub fn batch_json(results: &[Accepted<'_>]) -> Vec<u8> {
    const FRAME: usize = r#"{"results":[]}"#.len();
    let commas = results.len().saturating_sub(1);
    let len = FRAME + results.iter().map(Accepted::json_len).sum::<usize>() + commas;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(br#"{"results":["#);
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        result.write(&mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const ID: [u8; id::LEN] = *b"0123456789abcdef0123456789abcdef";

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn the_single_group_reply_is_the_documented_json_of_the_announced_length() {
        for (offset, recipients) in [(0, 0), (1, 7), (9, 10), (99, 100), (u64::MAX, usize::MAX)] {
            let reply = Accepted::Single {
                id: ID,
                offset,
                recipients,
            };
            let bytes = reply.to_json();
            assert_eq!(bytes.len(), reply.json_len());
            assert_eq!(
                parsed(&bytes),
                json!({"id": std::str::from_utf8(&ID).unwrap(), "offset": offset, "recipients": recipients})
            );
        }
    }

    #[test]
    fn the_groups_reply_sums_recipients_and_lists_every_group() {
        let a = GroupName::parse("user:1").unwrap();
        let b = GroupName::parse("A-z_0.9:x").unwrap();
        let reply = Accepted::Groups {
            id: ID,
            groups: vec![(&a, 2, 3), (&b, u64::MAX, 4)],
        };
        let bytes = reply.to_json();
        assert_eq!(bytes.len(), reply.json_len());
        assert_eq!(
            parsed(&bytes),
            json!({
                "id": std::str::from_utf8(&ID).unwrap(),
                "recipients": 7,
                "groups": [
                    {"group": "user:1", "offset": 2, "recipients": 3},
                    {"group": "A-z_0.9:x", "offset": u64::MAX, "recipients": 4},
                ],
            })
        );
    }

    #[test]
    fn the_batch_reply_lists_each_reply_in_order() {
        let a = GroupName::parse("g").unwrap();
        let results = [
            Accepted::Single {
                id: ID,
                offset: 1,
                recipients: 0,
            },
            Accepted::Groups {
                id: ID,
                groups: vec![(&a, 5, 1)],
            },
        ];
        let body = batch_json(&results);
        assert_eq!(body.len(), body.capacity());
        let results: Vec<Value> = results.iter().map(|r| parsed(&r.to_json())).collect();
        assert_eq!(parsed(&body), json!({ "results": results }));
    }
}
