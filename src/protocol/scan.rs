//! A hand-written reader for `POST /notify` bodies (and batch items) of the usual shape,
//! tried before serde: serde_json's derived reader costs about as much per body as the
//! rest of publishing it (field matching through visitors, `data` skipped by a generic
//! value walker), and nearly every body is a small object with plain names.
//!
//! It reads a subset of what serde reads, with the same result: an object of known
//! fields, each at most once, names written without escapes, and a `data` value that is
//! valid JSON (nested at most [`MAX_DEPTH`] deep). Anything else (escapes in names,
//! unknown or repeated fields, deeper data, any syntax error) gives `None`, and the body
//! goes through serde, whose errors the API reports. The test below checks the subset
//! against serde on generated bodies.

use std::borrow::Cow;

use super::http::{NotifyRequest, RawJson, Text};

/// Deepest nesting of arrays and objects in `data` read here (serde reads deeper ones).
pub const MAX_DEPTH: u32 = 64;

/// `text` as a notify body, when it has the usual shape (see the module's doc).
pub fn notify_request(text: &str) -> Option<NotifyRequest<'_>> {
    let mut c = Cursor { text, at: 0 };
    let mut req = NotifyRequest {
        group: None,
        groups: None,
        event: None,
        users: None,
        data: RawJson(""),
    };
    let mut seen = 0u8;
    c.space();
    c.expect(b'{')?;
    c.space();
    if !c.accept(b'}') {
        loop {
            c.expect(b'"')?;
            let field = match c.plain_string()? {
                "group" => 1,
                "groups" => 2,
                "event" => 4,
                "users" => 8,
                "data" => 16,
                _ => return None,
            };
            if seen & field != 0 {
                return None;
            }
            seen |= field;
            c.space();
            c.expect(b':')?;
            c.space();
            match field {
                1 => req.group = c.optional(Cursor::name)?,
                2 => req.groups = c.optional(Cursor::names)?,
                4 => req.event = c.optional(Cursor::name)?,
                8 => req.users = c.optional(Cursor::names)?,
                _ => {
                    let start = c.at;
                    c.value()?;
                    req.data = RawJson(c.text.get(start..c.at)?);
                }
            }
            c.space();
            match c.next()? {
                b',' => c.space(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.space();
    (seen & 16 != 0 && c.at == text.len()).then_some(req)
}

/// A position in the text being read.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    /// Steps over `b` if it comes next.
    fn accept(&mut self, b: u8) -> bool {
        let here = self.peek() == Some(b);
        self.at += usize::from(here);
        here
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.accept(b).then_some(())
    }

    /// JSON's whitespace (the four bytes serde_json skips too).
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// `null` as `None`, else what `read` reads. The outer `None` is "not read here".
    fn optional<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek() == Some(b'n') {
            return self.literal(b"null").map(|()| None);
        }
        read(self).map(Some)
    }

    /// A name: a string without escapes.
    fn name(&mut self) -> Option<Text<'a>> {
        self.expect(b'"')?;
        self.plain_string().map(|s| Text(Cow::Borrowed(s)))
    }

    /// An array of names.
    fn names(&mut self) -> Option<Vec<Text<'a>>> {
        self.expect(b'[')?;
        let mut list = Vec::new();
        self.space();
        if self.accept(b']') {
            return Some(list);
        }
        loop {
            list.push(self.name()?);
            self.space();
            match self.next()? {
                b',' => self.space(),
                b']' => return Some(list),
                _ => return None,
            }
        }
    }

    /// The rest of a string after its opening quote, when it has no escapes (and no
    /// control characters, which JSON does not allow in strings).
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at;
        self.at += string_stop(&self.text.as_bytes()[start..])?;
        self.expect(b'"')?;
        self.text.get(start..self.at - 1)
    }

    /// The rest of any valid string after its opening quote, escapes included.
    fn string(&mut self) -> Option<()> {
        loop {
            self.at += string_stop(&self.text.as_bytes()[self.at..])?;
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            if !self.next()?.is_ascii_hexdigit() {
                                return None;
                            }
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word).then(|| self.at = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number: `-`, then `0` or a digit string not starting with `0`, then an optional
    /// fraction and exponent, each with at least one digit.
    fn number(&mut self) -> Option<()> {
        self.accept(b'-');
        match self.next()? {
            b'0' if self.peek().is_some_and(|b| b.is_ascii_digit()) => return None,
            b'0' => {}
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.accept(b'.') && self.digits() == 0 {
            return None;
        }
        if self.accept(b'e') || self.accept(b'E') {
            if !self.accept(b'+') {
                self.accept(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// An object's key and its colon, up to the value.
    fn key(&mut self) -> Option<()> {
        self.space();
        self.expect(b'"')?;
        self.string()?;
        self.space();
        self.expect(b':')
    }

    /// Any JSON value, starting here (no whitespace before it), nested at most
    /// [`MAX_DEPTH`] deep. Walked without recursion: `open` holds one bit per enclosing
    /// container, 1 for an object.
    fn value(&mut self) -> Option<()> {
        let mut open: u64 = 0;
        let mut depth = 0u32;
        loop {
            // A value starts here.
            self.space();
            let container = match self.peek()? {
                b'{' => Some(true),
                b'[' => Some(false),
                b'"' => {
                    self.at += 1;
                    self.string()?;
                    None
                }
                b't' => self.literal(b"true").map(|()| None)?,
                b'f' => self.literal(b"false").map(|()| None)?,
                b'n' => self.literal(b"null").map(|()| None)?,
                b'-' | b'0'..=b'9' => self.number().map(|()| None)?,
                _ => return None,
            };
            if let Some(object) = container {
                self.at += 1;
                self.space();
                let empty = self.accept(if object { b'}' } else { b']' });
                if !empty {
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    depth += 1;
                    open = open << 1 | u64::from(object);
                    if object {
                        self.key()?;
                    }
                    continue;
                }
            }
            // A value ended: close what it ends, or go on to the next element.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = open & 1 == 1;
                self.space();
                match self.next()? {
                    b',' => {
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if object => {}
                    b']' if !object => {}
                    _ => return None,
                }
                open >>= 1;
                depth -= 1;
            }
        }
    }
}

/// Where the first `"`, `\` or control character of `bytes` is, if anywhere: where a
/// string ends or needs a closer look. Eight bytes at a time, as a string is mostly
/// neither.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit of `(x - 1) & !x` is set where `x` is 0, and that of
    // `(w - 0x20) & !w` where `w` is under 0x20. A borrow can set higher bytes' bits
    // too, but only above a byte that is really found, so the lowest one is right.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let Ok(eight) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(eight);
        let found = (zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    let stop = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
    stop.map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde(text: &str) -> Option<String> {
        serde_json::from_str::<NotifyRequest<'_>>(text)
            .ok()
            .map(|r| format!("{r:?}"))
    }

    /// Whenever the scanner reads a body, serde reads it too, to the same fields.
    fn agrees(text: &str) -> Option<String> {
        let fast = notify_request(text).map(|r| format!("{r:?}"));
        if fast.is_some() {
            assert_eq!(fast, serde(text), "{text:?}");
        }
        fast
    }

    #[test]
    fn usual_bodies_are_read_as_serde_reads_them() {
        for text in [
            r#"{"group":"room:1","event":"chat","data":{"seq":1,"t":17,"pad":"xx"}}"#,
            r#" { "data" : [ 1 , -2.5e+3 , 0 , 0.1 , 1E9 , true , false , null , "é\"\\\/\b\f\n\r\t\u00e9" , { } , [ ] , {"a":{"b":[{}]}} ] , "group" : "g" } "#,
            r#"{"groups":["a","b"],"users":[],"event":null,"group":null,"data":null}"#,
            r#"{"data":"x"}"#,
            "{\"data\":\n-0\t}",
        ] {
            assert!(agrees(text).is_some(), "{text}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for text in [
            "",
            "[]",
            "{}",
            r#"{"group":"g"}"#,
            r#"{"group":"g","data":1,"group":"h"}"#,
            r#"{"group":"g","data":1,"other":2}"#,
            r#"{"gr\u006fup":"g","data":1}"#,
            r#"{"group":"a\u003ab","data":1}"#,
            r#"{"group":"g","data":01}"#,
            r#"{"group":"g","data":1.}"#,
            r#"{"group":"g","data":-}"#,
            r#"{"group":"g","data":1e}"#,
            r#"{"group":"g","data":[1,]}"#,
            r#"{"group":"g","data":{"a":1,}}"#,
            r#"{"group":"g","data":{"a"}}"#,
            r#"{"group":"g","data":{1:2}}"#,
            r#"{"group":"g","data":"\x"}"#,
            r#"{"group":"g","data":"\u12g4"}"#,
            "{\"group\":\"g\",\"data\":\"a\u{1}b\"}",
            r#"{"group":"g","data":tru}"#,
            r#"{"group":"g","data":1}x"#,
            r#"{"group":"g","data":1,}"#,
            r#"{"group":"g" "data":1}"#,
            r#"{"group":7,"data":1}"#,
            r#"{"groups":["a",7],"data":1}"#,
        ] {
            assert_eq!(agrees(text), None, "{text}");
        }
        let deep = |n: usize| format!(r#"{{"data":{}1{}}}"#, "[".repeat(n), "]".repeat(n));
        assert!(agrees(&deep(MAX_DEPTH as usize)).is_some());
        assert!(agrees(&deep(MAX_DEPTH as usize + 1)).is_none());
        assert!(serde(&deep(MAX_DEPTH as usize + 1)).is_some());
    }

    #[test]
    fn string_stops_are_found_at_any_position() {
        for len in 0..20 {
            for stop in [b'"', b'\\', 0, 0x1f] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = stop;
                    if at + 1 < len {
                        bytes[at + 1] = 0xc3;
                    }
                    assert_eq!(string_stop(&bytes), Some(at), "{bytes:?}");
                }
            }
            let plain: Vec<u8> = (0..len)
                .map(|i| [b' ', b'~', 0x7f, 0x80, 0xff][i % 5])
                .collect();
            assert_eq!(string_stop(&plain), None, "{plain:?}");
        }
    }

    /// Pieces of notify bodies, valid and not, glued together at random.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"",
            "\\",
            "\\u00e9",
            "\\n",
            "\\x",
            "\"group\"",
            "\"groups\"",
            "\"event\"",
            "\"users\"",
            "\"data\"",
            "\"other\"",
            "\"g\"",
            "\"a b\"",
            "null",
            "true",
            "false",
            "nul",
            "0",
            "01",
            "-",
            "-0",
            "1.5",
            "1.",
            "2e8",
            "2E-3",
            "3e",
            ".5",
            "é",
            "\u{1}",
            "x",
        ])
    }

    proptest! {
        #[test]
        fn whatever_is_read_serde_reads_the_same(pieces in prop::collection::vec(piece(), 0..40)) {
            agrees(&pieces.concat());
        }

        #[test]
        fn whatever_data_is_read_serde_reads_the_same(pieces in prop::collection::vec(piece(), 0..30)) {
            agrees(&format!(r#"{{"group":"g","data":{}}}"#, pieces.concat()));
        }
    }
}
