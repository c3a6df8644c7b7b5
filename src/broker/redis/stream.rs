//! Offsets, epochs and history in Redis: the scripts that keep them and the reads.
//!
//! Per group, under its hash tag (one slot in a Cluster): the offset counter, the epoch
//! (a random string stored the first time anything needs it, so every node and every
//! restart agree on it) and a Stream of its latest publications whose entry ids are their
//! offsets (`<offset>-0`), trimmed with `MAXLEN ~`. All three expire together
//! [`HistorySettings::idle`] (`--history-ttl`, or 5 minutes without history) after the
//! group's last notification, so one-off groups do not stay in Redis forever; the next
//! notification then starts a new epoch at offset 1 (nodes watching the group re-base on
//! it, see `Group::admit`). The publish script assigns the offset, appends to the Stream
//! and publishes in one atomic step, so history and live delivery never disagree.

use bytes::Bytes;
use redis::Value;

use super::keys::Keys;
use crate::broker::history::{Entry, HistoryRead, HistorySettings};
use crate::broker::{BrokerError, Local};
use crate::protocol::{Epoch, GroupName, Offset, Position, Publication};

/// Assigns the next offset, keeps the publication in the group's Stream and publishes
/// `<offset>|<epoch>|<payload>` on the group's channel; the offset and epoch live on for
/// ARGV[6] more milliseconds.
/// KEYS: offset, channel, epoch, stream (one hash slot).
/// ARGV: `PUBLISH`/`SPUBLISH`, payload, a new epoch in case the group has none, the
/// Stream's length (0: no history), its TTL in milliseconds, the offset's and epoch's
/// TTL in milliseconds (never shorter than the Stream's).
///
/// A new epoch starts a new run: an offset left over (only its epoch was deleted)
/// starts again, and a Stream left over from before offset 1 is dropped, so the first
/// `XADD` of a run never meets higher ids.
pub(super) const PUBLISH_SCRIPT: &str = r"
if redis.call('SET', KEYS[3], ARGV[3], 'NX') then
  redis.call('DEL', KEYS[1])
end
local epoch = redis.call('GET', KEYS[3])
local offset = redis.call('INCR', KEYS[1])
if offset == 1 then
  redis.call('DEL', KEYS[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], offset .. '-0', 'p', ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
local receivers = redis.call(ARGV[1], KEYS[2], offset .. '|' .. epoch .. '|' .. ARGV[2])
return {offset, receivers, epoch}
";

/// Reads a group's position and, from its Stream, the oldest kept entry and up to
/// ARGV[3] entries from id ARGV[2] on, atomically.
/// KEYS: offset, epoch, stream. ARGV: a new epoch in case the group has none, start id,
/// count (0: position only), the new epoch's TTL in milliseconds (a group read but never
/// notified must not stay either). A new epoch starts its run at offset 0, as in the
/// publish script.
pub(super) const READ_SCRIPT: &str = r"
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then
  redis.call('DEL', KEYS[1])
end
local offset = redis.call('GET', KEYS[1]) or '0'
local epoch = redis.call('GET', KEYS[2])
if tonumber(ARGV[3]) == 0 then
  return {offset, epoch}
end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local entries = redis.call('XRANGE', KEYS[3], ARGV[2], '+', 'COUNT', ARGV[3])
return {offset, epoch, first, entries}
";

/// Arguments of the publish script for `publication`.
pub(super) fn publish_invocation<'a>(
    script: &'a redis::Script,
    keys: &Keys,
    publish_command: &str,
    publication: &Publication,
    payload: String,
    history: &HistorySettings,
) -> redis::ScriptInvocation<'a> {
    let group = &publication.group;
    let (size, ttl) = if history.is_on() {
        (history.size, history.ttl.as_millis().max(1))
    } else {
        (0, 0)
    };
    // `idle` is the history TTL when history is on: the offset and epoch outlive the
    // Stream, so a resume's epoch check and history read agree.
    let state_ttl = history.idle().as_millis().max(ttl).max(1);
    let mut invocation = script.key(keys.offset(group));
    invocation
        .key(keys.channel(group))
        .key(keys.epoch(group))
        .key(keys.history(group))
        .arg(publish_command)
        .arg(payload)
        .arg(Epoch::random().as_str())
        .arg(size)
        .arg(ttl.to_string())
        .arg(state_ttl.to_string());
    invocation
}

/// Arguments of the read script: `count` entries after `since` (0: position only); an
/// epoch it creates expires after [`HistorySettings::idle`] unless a notification
/// follows.
pub(super) fn read_invocation<'a>(
    script: &'a redis::Script,
    keys: &Keys,
    group: &GroupName,
    since: Offset,
    count: usize,
    history: &HistorySettings,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.key(keys.offset(group));
    invocation
        .key(keys.epoch(group))
        .key(keys.history(group))
        .arg(Epoch::random().as_str())
        .arg(format!("{}-0", since.saturating_add(1)))
        .arg(count)
        .arg(history.idle().as_millis().max(1).to_string());
    invocation
}

fn bad(what: &str) -> BrokerError {
    BrokerError::Unavailable(format!("unexpected reply from Redis: {what}"))
}

fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn number<T: std::str::FromStr>(value: &Value) -> Option<T> {
    match value {
        Value::Int(n) => n.to_string().parse().ok(),
        _ => std::str::from_utf8(text(value)?).ok()?.parse().ok(),
    }
}

fn epoch(value: &Value) -> Result<Epoch, BrokerError> {
    let raw = text(value).and_then(|b| std::str::from_utf8(b).ok());
    raw.and_then(|e| Epoch::parse(e).ok())
        .ok_or_else(|| bad("epoch"))
}

/// The publish script's answer: offset, nodes that received it, epoch.
pub(super) fn published(reply: &Value) -> Result<(Offset, usize, Epoch), BrokerError> {
    let Value::Array(items) = reply else {
        return Err(bad("publish"));
    };
    match &items[..] {
        [offset, receivers, e] => Ok((
            number(offset).ok_or_else(|| bad("offset"))?,
            number(receivers).ok_or_else(|| bad("receivers"))?,
            epoch(e)?,
        )),
        _ => Err(bad("publish")),
    }
}

/// The read script's position.
pub(super) fn position(reply: &Value) -> Result<Position, BrokerError> {
    let Value::Array(items) = reply else {
        return Err(bad("read"));
    };
    match &items[..] {
        [offset, e, ..] => Ok(Position {
            offset: number(offset).ok_or_else(|| bad("offset"))?,
            epoch: epoch(e)?,
        }),
        _ => Err(bad("read")),
    }
}

/// The read script's whole answer. Entries are decoded and encoded again as the frames
/// members got live (once per resume or history request, not per delivery).
pub(super) fn history(group: &GroupName, reply: &Value) -> Result<HistoryRead, BrokerError> {
    let position = position(reply)?;
    let Value::Array(items) = reply else {
        return Err(bad("read"));
    };
    let [_, _, first, entries] = &items[..] else {
        return Err(bad("read"));
    };
    let first = stream_entries(first)?
        .first()
        .map_or(position.offset + 1, |(offset, _)| *offset);
    let mut out = Vec::new();
    for (offset, payload) in stream_entries(entries)? {
        let Some(mut publication) = serde_json::from_slice::<Publication>(&payload).ok() else {
            tracing::warn!(%group, offset, "undecodable history entry");
            continue;
        };
        publication.offset = offset;
        publication.epoch = position.epoch.clone();
        out.push(Entry {
            offset,
            frame: Local::encode(&publication),
            users: publication.users.take().map(std::sync::Arc::new),
        });
    }
    Ok(HistoryRead {
        position,
        first,
        entries: out,
    })
}

/// `XRANGE`'s `[[id, [field, value, ...]], ...]` as (offset, the `p` field).
fn stream_entries(value: &Value) -> Result<Vec<(Offset, Bytes)>, BrokerError> {
    let Value::Array(entries) = value else {
        return Err(bad("XRANGE"));
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return Err(bad("stream entry"));
        };
        let [id, Value::Array(fields)] = &parts[..] else {
            return Err(bad("stream entry"));
        };
        let id = text(id).and_then(|b| std::str::from_utf8(b).ok());
        let offset = id
            .and_then(|id| id.split('-').next())
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| bad("stream id"))?;
        let payload = fields
            .chunks(2)
            .find(|kv| kv.first().and_then(text) == Some(b"p"))
            .and_then(|kv| kv.get(1).and_then(text))
            .ok_or_else(|| bad("stream entry field"))?;
        out.push((offset, Bytes::copy_from_slice(payload)));
    }
    Ok(out)
}

/// Reads `<offset>|<epoch>|<publication JSON>` from a group's channel.
pub(super) fn decode(payload: &[u8]) -> Option<Publication> {
    let mut parts = payload.splitn(3, |b| *b == b'|');
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let epoch = Epoch::parse(std::str::from_utf8(parts.next()?).ok()?).ok()?;
    let mut publication: Publication = serde_json::from_slice(parts.next()?).ok()?;
    publication.offset = offset;
    publication.epoch = epoch;
    Some(publication)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn channel_messages_carry_offset_epoch_and_publication() {
        let p = decode(br#"7|ab-1|{"group":"g","event":"message","data":{"x":1}}"#).unwrap();
        assert_eq!(
            (p.offset, p.epoch.as_str(), p.data.get()),
            (7, "ab-1", r#"{"x":1}"#)
        );
        assert!(decode(br#"7|a b|{"group":"g","event":"message","data":1}"#).is_none());
        assert!(decode(b"7|e").is_none());
    }

    #[test]
    fn a_read_reply_becomes_position_first_and_frames() {
        let entry = |o: u64| {
            Value::Array(vec![
                bulk(&format!("{o}-0")),
                Value::Array(vec![
                    bulk("p"),
                    bulk(r#"{"group":"g","event":"message","data":1}"#),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            bulk("9"),
            bulk("ep"),
            Value::Array(vec![entry(6)]),
            Value::Array(vec![entry(8), entry(9)]),
        ]);
        let g = GroupName::parse("g").unwrap();
        let read = history(&g, &reply).unwrap();
        assert_eq!((read.position.offset, read.first), (9, 6));
        let offsets: Vec<Offset> = read.entries.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, [8, 9]);
        let frame = String::from_utf8_lossy(&read.entries[0].frame).into_owned();
        assert!(frame.contains(r#""offset":8,"epoch":"ep""#), "{frame}");
        let empty = Value::Array(vec![
            bulk("0"),
            bulk("ep"),
            Value::Array(vec![]),
            Value::Array(vec![]),
        ]);
        assert_eq!(history(&g, &empty).unwrap().first, 1);
        assert!(position(&Value::Array(vec![bulk("x")])).is_err());
    }
}
