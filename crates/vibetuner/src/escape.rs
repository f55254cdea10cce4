//! Escaping text as it is written, without building the escaped copy first: one loop for the
//! HTML of templates ([`html`]) and the JSON strings of log lines ([`json`]).

use std::fmt::{self, Write};

/// Writes `text` to `out`, each byte `escape` maps to a replacement written as that instead.
/// Only ASCII bytes are replaced, so the runs between them stay whole characters.
fn write_escaped(
    out: &mut (impl Write + ?Sized),
    text: &str,
    escape: impl Fn(u8) -> Option<&'static str>,
) -> fmt::Result {
    let mut plain = 0;
    for (i, byte) in text.bytes().enumerate() {
        let Some(replacement) = escape(byte) else {
            continue;
        };
        debug_assert!(byte.is_ascii(), "only ASCII bytes are replaced");
        out.write_str(&text[plain..i])?;
        out.write_str(replacement)?;
        plain = i + 1;
    }
    out.write_str(&text[plain..])
}

/// Writes `text` with `& < > " '` escaped, for HTML text and attribute values.
pub(crate) fn html(out: &mut (impl Write + ?Sized), text: &str) -> fmt::Result {
    write_escaped(out, text, |byte| match byte {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&#34;"),
        b'\'' => Some("&#39;"),
        _ => None,
    })
}

/// Control characters without a short escape, as serde_json writes them.
const CONTROL: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b",
    "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012",
    "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a",
    "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// Writes `text` as the inside of a JSON string, escaped as serde_json escapes it.
pub(crate) fn json(out: &mut (impl Write + ?Sized), text: &str) -> fmt::Result {
    write_escaped(out, text, |byte| match byte {
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        0x00..=0x1f => Some(CONTROL[usize::from(byte)]),
        _ => None,
    })
}

/// A writer that escapes everything written through it for the inside of a JSON string (a
/// value's `Debug` output, formatted straight into a log line).
pub(crate) struct Json<'a, W: Write + ?Sized>(pub(crate) &'a mut W);

impl<W: Write + ?Sized> Write for Json<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        json(self.0, text)
    }
}
