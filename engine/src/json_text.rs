//! A JSON document held as the escaped contents of a JSON string, for annotation values that
//! are JSON themselves (`sidecar.istio.io/status`, the provenance annotation).
//!
//! Serializing such a value and then escaping it for the patch scans it twice, and the
//! second scan meets a quote every few bytes. [`JsonText::of`] writes the escaped form in one
//! pass: the serializer's own string delimiters and escapes are written already escaped, and
//! everything else it writes (`{}[],:`, numbers, `true`, `null`, and runs of string text it
//! left unescaped) needs no escape inside a JSON string.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

use crate::json_write::{WriteJson, unicode_escape};

/// Room made at once for an escaped document: the sidecar status, the provenance annotation
/// and the app probers of a pod of three containers each fit, so each is one allocation.
const ROOM: usize = 1024;

/// A compact JSON document, escaped to be written between the quotes of a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText {
    escaped: String,
}

// === impl JsonText ===

impl JsonText {
    /// `value` as compact JSON, escaped for a JSON string; what `serde_json::to_string` and
    /// then escaping the result as serde_json escapes a string would give.
    pub fn of(value: &impl Serialize) -> JsonText {
        let mut bytes = Vec::with_capacity(ROOM);
        let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, Escaped);
        if value.serialize(&mut serializer).is_err() {
            // A value with no JSON form (the engine's own types always have one): `null`.
            bytes.clear();
            bytes.extend_from_slice(b"null");
        }
        // Only valid UTF-8 is written: serde_json's own output, with ASCII escapes around it.
        JsonText {
            escaped: String::from_utf8(bytes).unwrap_or_else(|_| "null".to_string()),
        }
    }

    /// The escaped contents, without the enclosing quotes.
    #[cfg(test)]
    pub fn escaped(&self) -> &str {
        &self.escaped
    }

    /// The length in bytes of the escaped contents: at least [`JsonText::document_len`].
    pub fn escaped_len(&self) -> usize {
        self.escaped.len()
    }

    /// The length in bytes of the document itself: of the contents once unescaped.
    pub fn document_len(&self) -> usize {
        let bytes = self.escaped.as_bytes();
        let mut len = 0;
        let mut at = 0;
        while at < bytes.len() {
            match (bytes[at], bytes.get(at + 1)) {
                // `\uXXXX`: written only for ASCII controls, one byte each.
                (b'\\', Some(b'u')) => at += 6,
                (b'\\', Some(_)) => at += 2,
                _ => at += 1,
            }
            len += 1;
        }
        len
    }

    /// The JSON document itself, unescaped.
    pub fn to_json(&self) -> String {
        serde_json::from_str(&format!("\"{}\"", self.escaped)).unwrap_or_default()
    }
}

impl WriteJson for JsonText {
    /// Writes the JSON string whose contents are the document.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.escaped.as_bytes());
        out.push(b'"');
    }
}

/// serde_json's compact formatter, with what it writes for strings escaped once more.
struct Escaped;

impl Formatter for Escaped {
    fn begin_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\\\"")
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b"\\\"")
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, writer: &mut W, escape: CharEscape) -> io::Result<()> {
        // The inner escape's backslash becomes `\\`, and a quote after it `\"`.
        let escaped: &[u8] = match escape {
            CharEscape::Quote => b"\\\\\\\"",
            CharEscape::ReverseSolidus => b"\\\\\\\\",
            CharEscape::Solidus => b"\\\\/",
            CharEscape::Backspace => b"\\\\b",
            CharEscape::FormFeed => b"\\\\f",
            CharEscape::LineFeed => b"\\\\n",
            CharEscape::CarriageReturn => b"\\\\r",
            CharEscape::Tab => b"\\\\t",
            CharEscape::AsciiControl(byte) => {
                writer.write_all(b"\\")?;
                return writer.write_all(&unicode_escape(byte));
            }
        };
        writer.write_all(escaped)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What the patch wrote before: the compact JSON, escaped as serde_json escapes a string.
    fn escaped_twice(value: &serde_json::Value) -> String {
        let inner = serde_json::to_string(value).unwrap();
        let outer = serde_json::to_string(&inner).unwrap();
        outer[1..outer.len() - 1].to_string()
    }

    #[test]
    fn one_pass_matches_serializing_then_escaping() {
        let values = [
            json!({"initContainers": ["istio-init"], "containers": null, "revision": "default"}),
            json!({"quote": "a\"b", "backslash": "c\\d", "controls": "\n\r\t\u{8}\u{c}\u{1}\u{1f}"}),
            json!({"slash": "/a/b", "unicode": "é – 漢", "numbers": [1, -2, 3.5], "flags": [true, false]}),
            json!("a lone string with \"quotes\""),
            json!([]),
        ];
        for value in &values {
            let text = JsonText::of(value);
            assert_eq!(text.escaped(), escaped_twice(value), "{value}");
            assert_eq!(text.to_json(), serde_json::to_string(value).unwrap());
            assert_eq!(text.document_len(), text.to_json().len(), "{value}");
        }
    }
}
