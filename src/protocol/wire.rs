//! Server-to-client WebSocket frames, encoded once and shared by every recipient.
//!
//! Frames herald sends are unmasked (RFC 6455 §5.1), so a notification's complete frame,
//! header and payload, is byte-for-byte the same for every member of a group. It is
//! built once as [`Bytes`]; each connection writes the shared bytes with vectored writes,
//! without a per-connection copy or write buffer.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as Kind, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::{Data, Epoch, EventName, GroupName, Offset};

/// Builds a final text frame of `payload_len` bytes, which `write_payload` appends to
/// the buffer it is given. The buffer is allocated once at the frame's exact size
/// (header and payload), the payload is written once after room for the header, and
/// the header is filled in last: no copy of the payload is made, and a buffer filled to
/// its capacity becomes `Bytes` without another allocation.
///
/// A payload that turns out longer or shorter than announced still makes a correct
/// frame (framed again, at the cost of a copy); callers announce the exact length.
pub fn text_frame(payload_len: usize, write_payload: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let header_len = TEXT.len(payload_len as u64);
    let mut buf = Vec::with_capacity(header_len + payload_len);
    buf.resize(header_len, 0);
    write_payload(&mut buf);
    let written = buf.len() - header_len;
    if written == payload_len {
        return with_header(buf, header_len);
    }
    let room = TEXT.len(written as u64);
    let mut again = Vec::with_capacity(room + written);
    again.resize(room, 0);
    again.extend_from_slice(&buf[header_len..]);
    with_header(again, room)
}

/// The header of a final, unmasked text frame.
const TEXT: FrameHeader = FrameHeader {
    is_final: true,
    rsv1: false,
    rsv2: false,
    rsv3: false,
    opcode: OpCode::Data(Kind::Text),
    mask: None,
};

/// Fills in the header in the first `header_len` bytes of `buf`, kept for exactly the
/// header of the payload after them.
fn with_header(mut buf: Vec<u8>, header_len: usize) -> Bytes {
    let payload_len = (buf.len() - header_len) as u64;
    let mut slot = &mut buf[..header_len];
    // Writing into a slice of exactly `header_len` bytes cannot fail.
    if TEXT.format(payload_len, &mut slot).is_err() {
        unreachable!("a frame header always fits the room reserved for it");
    }
    Bytes::from(buf)
}

/// The payload of a frame [`text_frame`] built (the JSON text without the header), shared
/// rather than copied. Used where a stored frame is served over HTTP.
pub fn text_payload(frame: &Bytes) -> Bytes {
    // Server frames are unmasked, so the header is 2, 4 or 10 bytes after the payload
    // length class (RFC 6455 §5.2): 7-bit length, 126 + 16-bit, or 127 + 64-bit.
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return Bytes::new(),
    };
    frame.slice(header.min(frame.len())..)
}

/// Builds the notification frame members receive, as a complete WebSocket frame.
/// Called once per notification; every recipient shares the result.
///
/// Group and event names are validated to characters that need no JSON escaping, and
/// `data` is already valid JSON, so the frame is assembled without re-serialising `data`.
pub fn encode_notify(
    group: &GroupName,
    event: &EventName,
    offset: Offset,
    epoch: &Epoch,
    data: &Data,
) -> Bytes {
    const PARTS: [&str; 6] = [
        r#"{"type":"notify","group":""#,
        r#"","event":""#,
        r#"","offset":"#,
        r#","epoch":""#,
        r#"","data":"#,
        "}",
    ];
    let [open, event_key, offset_key, epoch_key, data_key, close] = PARTS;
    let fixed: usize = PARTS.iter().map(|p| p.len()).sum();
    let data = data.as_bytes();
    let mut digits = itoa::Buffer::new();
    let offset = digits.format(offset);
    let (group, event, epoch) = (group.as_str(), event.as_str(), epoch.as_str());
    let len = fixed + group.len() + event.len() + offset.len() + epoch.len() + data.len();
    text_frame(len, |out| {
        for part in [
            open, group, event_key, event, offset_key, offset, epoch_key, epoch, data_key,
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        out.extend_from_slice(data);
        out.extend_from_slice(close.as_bytes());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;
    use std::io::Cursor;

    fn roundtrip(payload: &str) {
        let frame = text_frame(payload.len(), |b| b.extend_from_slice(payload.as_bytes()));
        let mut cursor = Cursor::new(&frame[..]);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(header.opcode, OpCode::Data(Kind::Text));
        assert_eq!(len as usize, payload.len());
        assert_eq!(&frame[cursor.position() as usize..], payload.as_bytes());
        assert_eq!(&text_payload(&frame)[..], payload.as_bytes());
    }

    #[test]
    fn frames_of_every_length_class_parse_back() {
        for n in [0, 1, 125, 126, 65_535, 65_536, 200_000] {
            roundtrip(&"x".repeat(n));
        }
    }

    #[test]
    fn a_payload_of_another_length_than_announced_still_makes_a_correct_frame() {
        for announced in [0, 3, 200] {
            let frame = text_frame(announced, |b| b.extend_from_slice(b"hello"));
            assert_eq!(&text_payload(&frame)[..], b"hello");
            assert_eq!(frame[1] & 0x7f, 5);
        }
    }

    #[test]
    fn notify_frame_is_the_documented_json() {
        let data = Data::from(RawValue::from_string(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap());
        for offset in [0, 9, 17, 100, u64::MAX] {
            let frame = encode_notify(
                &GroupName::parse("room:1").unwrap(),
                &EventName::parse("chat.message").unwrap(),
                offset,
                &Epoch::parse("e1").unwrap(),
                &data,
            );
            let v: serde_json::Value = serde_json::from_slice(&text_payload(&frame)).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"type":"notify","group":"room:1","event":"chat.message","offset":offset,"epoch":"e1","data":{"text":"hi","n":[1,2]}})
            );
        }
    }
}
