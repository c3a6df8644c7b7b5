//! Span fields written the way `tracing-subscriber`'s own formatters write them, only
//! cheaper. The fmt layer formats a span's fields into text as soon as the span opens,
//! and herald opens one per HTTP request: the stock formatters spend more on it (a styled
//! `write!` per field and a string grown several times for text; a map, a string per
//! value and a serializer for JSON) than the rest of the request's bookkeeping.
//!
//! The common case (a few fields whose names and values need no escaping) is written
//! into a stack buffer and copied out once. Anything else (escapes, ANSI colours,
//! floats, errors, `message`, `r#` and `log.` names, too long) is left to the stock
//! formatter, so the output is the same either way; the tests compare the two.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{self, Writer};
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Text fields, as `DefaultFields` writes them: `name=value` separated by spaces.
#[derive(Debug, Default)]
pub struct TextFields(format::DefaultFields);

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        if !writer.has_ansi_escapes() {
            let mut fast = Fast::new(Style::Text);
            fields.record(&mut fast);
            if !fast.failed {
                return writer.write_str(fast.buf.as_str()?);
            }
        }
        self.0.format_fields(writer, fields)
    }
}

/// JSON fields, as `JsonFields` writes them: one object, keys sorted.
#[derive(Debug, Default)]
pub struct JsonFields(format::JsonFields);

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut fast = Fast::new(Style::Json);
        fields.record(&mut fast);
        match fast.json() {
            Some(text) => writer.write_str(text.as_str()?),
            None => self.0.format_fields(writer, fields),
        }
    }

    /// Fields recorded after the span opened join its object (as with `JsonFields`: the
    /// text is one JSON object, so it is parsed, extended and written again).
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        let mut added = String::new();
        self.0.format_fields(Writer::new(&mut added), fields)?;
        let parse = |text: &str| {
            serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text)
                .map_err(|_| fmt::Error)
        };
        let mut all = parse(&current.fields)?;
        all.extend(parse(&added)?);
        current.fields = serde_json::to_string(&all).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// Which stock formatter's output to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Text,
    Json,
}

/// Bytes of formatted fields kept on the stack; more takes the stock path.
const ROOM: usize = 320;

/// Fields of one record the fast path handles; more takes the stock path.
const MAX_FIELDS: usize = 8;

/// A fixed buffer that refuses (with `fmt::Error`) what does not fit.
struct Buf {
    bytes: [u8; ROOM],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Self {
            bytes: [0; ROOM],
            len: 0,
        }
    }

    fn as_str(&self) -> Result<&str, fmt::Error> {
        std::str::from_utf8(&self.bytes[..self.len]).map_err(|_| fmt::Error)
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The fast path's visitor: writes each field's value into `buf` as it is recorded and
/// gives up (`failed`) at the first thing it does not handle.
struct Fast {
    style: Style,
    buf: Buf,
    /// Each field's name and where its value lies in `buf` (JSON reorders them).
    fields: [(&'static str, usize, usize); MAX_FIELDS],
    count: usize,
    failed: bool,
}

impl Fast {
    fn new(style: Style) -> Self {
        Self {
            style,
            buf: Buf::new(),
            fields: [("", 0, 0); MAX_FIELDS],
            count: 0,
            failed: false,
        }
    }

    /// Writes one field with `value` writing its value; gives up when the name is one
    /// the stock formatters treat specially or `value` fails (does not fit, or needs
    /// escaping).
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Buf, Style) -> fmt::Result) {
        if self.failed {
            return;
        }
        let name = field.name();
        let special = name == "message" || name.starts_with("r#") || name.starts_with("log.");
        if special || self.count == MAX_FIELDS || !plain(name, Style::Json) {
            self.failed = true;
            return;
        }
        let written = (|| {
            if self.style == Style::Text {
                if self.count > 0 {
                    self.buf.write_char(' ')?;
                }
                self.buf.write_str(name)?;
                self.buf.write_char('=')?;
            }
            let start = self.buf.len;
            value(&mut self.buf, self.style)?;
            Ok::<_, fmt::Error>(start)
        })();
        match written {
            Ok(start) => {
                self.fields[self.count] = (name, start, self.buf.len);
                self.count += 1;
            }
            Err(_) => self.failed = true,
        }
    }

    /// The values as one JSON object with its keys sorted, as `JsonFields` writes its
    /// map, or `None` when the stock formatter must write them (also for a repeated
    /// name, where the map would keep one value). Text needs no such step: its `buf`, read
    /// in place unless `failed`, is already the output (returning it would copy it).
    fn json(&self) -> Option<Buf> {
        if self.failed {
            return None;
        }
        let mut order = self.fields;
        let order = &mut order[..self.count];
        order.sort_unstable_by_key(|(name, _, _)| *name);
        if order.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let values = self.buf.as_str().ok()?;
        let mut out = Buf::new();
        let mut write = || {
            out.write_char('{')?;
            for (i, (name, start, end)) in order.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_char('"')?;
                out.write_str(name)?;
                out.write_str("\":")?;
                out.write_str(values.get(*start..*end).ok_or(fmt::Error)?)?;
            }
            out.write_char('}')
        };
        write().ok()?;
        Some(out)
    }
}

impl Visit for Fast {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |buf, style| {
            if !plain(value, style) {
                return Err(fmt::Error);
            }
            buf.write_char('"')?;
            buf.write_str(value)?;
            buf.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |buf, style| match style {
            // `DefaultFields` writes a value's `Debug` as it is.
            Style::Text => write!(buf, "{value:?}"),
            // `JsonFields` makes it a JSON string.
            Style::Json => {
                buf.write_char('"')?;
                let start = buf.len;
                write!(buf, "{value:?}")?;
                let text =
                    std::str::from_utf8(&buf.bytes[start..buf.len]).map_err(|_| fmt::Error)?;
                if !plain(text, style) {
                    return Err(fmt::Error);
                }
                buf.write_char('"')
            }
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |buf, _| write!(buf, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |buf, _| write!(buf, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |buf, _| write!(buf, "{value}"));
    }

    // Formatted differently by the two stock formatters (and by JSON's float writer):
    // left to them.
    fn record_f64(&mut self, _: &Field, _: f64) {
        self.failed = true;
    }

    fn record_i128(&mut self, _: &Field, _: i128) {
        self.failed = true;
    }

    fn record_u128(&mut self, _: &Field, _: u128) {
        self.failed = true;
    }

    fn record_bytes(&mut self, _: &Field, _: &[u8]) {
        self.failed = true;
    }

    fn record_error(&mut self, _: &Field, _: &(dyn std::error::Error + 'static)) {
        self.failed = true;
    }
}

/// Whether `text` is written verbatim between quotes: for text, what `str`'s `Debug`
/// leaves alone (printable ASCII but `"`, `\` and `'`, to stay on the safe side); for
/// JSON, what needs no escape (no `"`, `\` or control character).
fn plain(text: &str, style: Style) -> bool {
    // A table lookup per byte: this runs over every value of every request span.
    let table = match style {
        Style::Text => &PLAIN_TEXT,
        Style::Json => &PLAIN_JSON,
    };
    text.bytes().all(|b| table[usize::from(b)])
}

/// [`plain`]'s verdict per byte for text.
static PLAIN_TEXT: [bool; 256] = plain_table(Style::Text);

/// [`plain`]'s verdict per byte for JSON.
static PLAIN_JSON: [bool; 256] = plain_table(Style::Json);

/// The byte classes of [`plain`], as a table.
const fn plain_table(style: Style) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = match style {
            Style::Text => byte >= 0x20 && byte < 0x7f && !matches!(byte, b'"' | b'\\' | b'\''),
            Style::Json => byte >= 0x20 && !matches!(byte, b'"' | b'\\'),
        };
        b += 1;
    }
    table
}

#[cfg(test)]
mod tests;
