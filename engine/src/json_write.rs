//! JSON written by hand into the patch's bytes: the [`WriteJson`] trait the sidecar's
//! containers implement, an object writer whose keys are the engine's constants, and string
//! escaping exactly as serde_json escapes (with JSON Pointer escapes for path tokens).
//!
//! A serializer between a container and the bytes costs more than the writing itself: each
//! string goes through its state machine and an `io::Write`. Values that are JSON already
//! (a user's mount, a probe) still go through serde_json ([`write_serialized`]).

use serde::Serialize;

use crate::json_bytes::plain_run_end;

/// A value the patch writes as JSON by hand, with no serializer between it and the bytes.
pub(crate) trait WriteJson {
    /// Appends the value's JSON to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

impl WriteJson for serde_json::Value {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_serialized(out, self);
    }
}

impl WriteJson for serde_json::value::RawValue {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.get().as_bytes());
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl<T: WriteJson + ?Sized> WriteJson for Box<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl WriteJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

impl WriteJson for std::borrow::Cow<'_, str> {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_json_string(out, self);
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_array(out, self);
    }
}

/// Writes a JSON object member by member; keys are the engine's constants, which need no
/// escape.
pub(crate) struct JsonObject<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> JsonObject<'o> {
    /// Opens the object.
    pub(crate) fn new(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, empty: true }
    }

    /// Writes the next member's key; its value is written to [`JsonObject::out`] next.
    pub(crate) fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Where the current member's value goes.
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// A member whose value is the string `value`.
    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_string(self.out, value);
    }

    /// A member whose value is the whole number `value`.
    pub(crate) fn number(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A member whose value is `value`.
    pub(crate) fn item(&mut self, key: &str, value: &(impl WriteJson + ?Sized)) {
        self.key(key);
        value.write_json(self.out);
    }

    /// Closes the object.
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// Writes `items` as a JSON array.
pub(crate) fn write_array<T: WriteJson>(out: &mut Vec<u8>, items: &[T]) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        item.write_json(out);
    }
    out.push(b']');
}

/// Writes `value` with serde_json (a value made of JSON already, e.g. a user's mount).
pub(crate) fn write_serialized(out: &mut Vec<u8>, value: &impl Serialize) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        // Serializing a value that has no JSON form: write null rather than a broken
        // document (serde_json::Value and the engine's own types always serialize).
        out.extend_from_slice(b"null");
    }
}

/// Writes `text` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn write_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    write_escaped(out, text, false);
    out.push(b'"');
}

/// Writes the concatenation of `parts` as one JSON string.
pub(crate) fn write_json_string_of(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        write_escaped(out, part, false);
    }
    out.push(b'"');
}

/// The bytes that need an escape inside a JSON Pointer token: those of a JSON string (quote,
/// backslash, control characters), and `~` and `/`.
const SPECIAL: [bool; 256] = {
    let mut special = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        special[byte] = true;
        byte += 1;
    }
    special[b'"' as usize] = true;
    special[b'\\' as usize] = true;
    special[b'~' as usize] = true;
    special[b'/' as usize] = true;
    special
};

/// Writes `text` escaped as serde_json escapes a string's contents (`\n`, `\t` and the like by
/// name, other control characters as `\u00xx`), and for a pointer token `~` and `/` too. Runs
/// with nothing to escape are copied whole: found eight bytes at a time in a string's
/// contents, after one table lookup per byte in a pointer token (short, and `/` is common in
/// a string's contents).
pub(crate) fn write_escaped(out: &mut Vec<u8>, text: &str, pointer_token: bool) {
    let bytes = text.as_bytes();
    let mut run = 0;
    let mut at = 0;
    loop {
        at = if pointer_token {
            bytes
                .get(at..)
                .and_then(|rest| rest.iter().position(|&byte| SPECIAL[usize::from(byte)]))
                .map_or(bytes.len(), |found| at + found)
        } else {
            plain_run_end(bytes, at)
        };
        let Some(&byte) = bytes.get(at) else {
            break;
        };
        let unicode;
        let escape: &[u8] = match byte {
            b'~' => b"~0",
            b'/' => b"~1",
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                unicode = unicode_escape(byte);
                &unicode
            }
        };
        out.extend_from_slice(bytes.get(run..at).unwrap_or_default());
        out.extend_from_slice(escape);
        at += 1;
        run = at;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
}

/// `\u00xx` for a control character, as serde_json writes one.
pub(crate) fn unicode_escape(byte: u8) -> [u8; 6] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [
        b'\\',
        b'u',
        b'0',
        b'0',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let texts = [
            "",
            "plain",
            r#"{"initContainers":["istio-init"],"revision":"default"}"#,
            "back\\slash \"quote\" at the end\\",
            "\"",
            "control \u{1} tab\t newline\n",
            "é ü 日本 \u{7f}",
            "a run longer than a word, then \"one\" at offsets 31 and 36/~ \\ and\u{1f}then more",
        ];
        let controls: String = (0u8..0x20).map(char::from).collect();
        for text in texts.iter().copied().chain([controls.as_str()]) {
            let mut written = Vec::new();
            write_json_string(&mut written, text);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }
}
