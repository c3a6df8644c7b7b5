//! Server-to-client WebSocket frames, encoded once and shared by every recipient.
//!
//! Frames herald sends are unmasked (RFC 6455 §5.1), so a notification's complete frame,
//! header and payload, is byte-for-byte the same for every member of a group. It is
//! built once as [`Bytes`]; each connection writes the shared bytes with vectored writes,
//! without a per-connection copy or write buffer.

use std::io::Write as _;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

use super::{Epoch, EventName, GroupName, Offset};

/// Room left in front of the payload for the largest server frame header (2 + 8 bytes).
const HEADER_ROOM: usize = 10;

/// Builds a final text frame whose payload `write_payload` appends to the buffer it is
/// given. The payload is written once, right after space kept for the header, and the
/// header is then filled in just before it: no copy of the payload is made.
pub fn text_frame(payload_hint: usize, write_payload: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut buf = Vec::with_capacity(HEADER_ROOM + payload_hint);
    buf.resize(HEADER_ROOM, 0);
    write_payload(&mut buf);
    let payload_len = (buf.len() - HEADER_ROOM) as u64;
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let header_len = header.len(payload_len);
    let start = HEADER_ROOM - header_len;
    let mut slot = &mut buf[start..HEADER_ROOM];
    // Writing into a slice of exactly `header_len` bytes cannot fail.
    if header.format(payload_len, &mut slot).is_err() {
        unreachable!("a frame header always fits the room reserved for it");
    }
    Bytes::from(buf).slice(start..)
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
    data: &RawValue,
) -> Bytes {
    let data = data.get();
    let hint = 80 + group.as_str().len() + event.as_str().len() + data.len();
    text_frame(hint, |out| {
        out.extend_from_slice(br#"{"type":"notify","group":""#);
        out.extend_from_slice(group.as_str().as_bytes());
        out.extend_from_slice(br#"","event":""#);
        out.extend_from_slice(event.as_str().as_bytes());
        out.extend_from_slice(br#"","offset":"#);
        // Formatted straight into the frame (a write to a Vec cannot fail).
        let _ = write!(out, "{offset}");
        out.extend_from_slice(br#","epoch":""#);
        out.extend_from_slice(epoch.as_str().as_bytes());
        out.extend_from_slice(br#"","data":"#);
        out.extend_from_slice(data.as_bytes());
        out.push(b'}');
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn roundtrip(payload: &str) {
        let frame = text_frame(payload.len(), |b| b.extend_from_slice(payload.as_bytes()));
        let mut cursor = Cursor::new(&frame[..]);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert!(header.is_final && header.mask.is_none());
        assert_eq!(header.opcode, OpCode::Data(Data::Text));
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
    fn notify_frame_is_the_documented_json() {
        let data = RawValue::from_string(r#"{"text":"hi","n":[1,2]}"#.into()).unwrap();
        let frame = encode_notify(
            &GroupName::parse("room:1").unwrap(),
            &EventName::parse("chat.message").unwrap(),
            17,
            &Epoch::parse("e1").unwrap(),
            &data,
        );
        let v: serde_json::Value = serde_json::from_slice(&text_payload(&frame)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"notify","group":"room:1","event":"chat.message","offset":17,"epoch":"e1","data":{"text":"hi","n":[1,2]}})
        );
    }
}
