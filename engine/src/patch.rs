//! RFC 6902 operations built from what the engine adds, never from a diff of whole pods, and
//! serialized as they are added.
//!
//! The engine knows exactly what it adds, so it writes `add` operations directly: one per
//! container, volume, label and annotation. A map or array that is absent is created in
//! one operation; one that exists is extended item by item and never replaced, so fields
//! written by other webhooks survive. Keys are escaped as JSON Pointer tokens (`~` as `~0`,
//! `/` as `~1`). Each operation is written to the patch's bytes when it is added, so no
//! operation tree is built and serialized again.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use serde::Serialize;

use crate::json_text::JsonText;
use crate::json_write::{WriteJson, write_escaped, write_json_string, write_serialized};

/// A label or annotation to set: its key and value, borrowed where they can be.
pub(crate) type Entry<'a> = (Cow<'a, str>, EntryValue<'a>);

/// A label or annotation value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryValue<'a> {
    /// Text, escaped as it is written.
    Text(Cow<'a, str>),
    /// A JSON document, escaped already (`sidecar.istio.io/status`, provenance).
    Json(JsonText),
}

impl WriteJson for EntryValue<'_> {
    /// Writes the value as a JSON string.
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            EntryValue::Text(text) => write_json_string(out, text),
            EntryValue::Json(json) => json.write_json(out),
        }
    }
}

impl From<String> for EntryValue<'_> {
    fn from(text: String) -> Self {
        EntryValue::Text(Cow::Owned(text))
    }
}

impl<'a> From<&'a str> for EntryValue<'a> {
    fn from(text: &'a str) -> Self {
        EntryValue::Text(Cow::Borrowed(text))
    }
}

impl From<JsonText> for EntryValue<'_> {
    fn from(json: JsonText) -> Self {
        EntryValue::Json(json)
    }
}

/// Entries sorted by key, the last of equal keys kept: the order and content of a JSON object
/// built from them, without building it.
pub(crate) fn sorted_last_wins<K: Ord, T>(mut entries: Vec<(K, T)>) -> Vec<(K, T)> {
    entries.reverse();
    // Stable: of equal keys, the one given last comes first now and survives the dedup.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|later, kept| later.0 == kept.0);
    entries
}

/// Writes `token` as one JSON Pointer token (`~` as `~0`, `/` as `~1`) inside a JSON string.
fn write_pointer_token(out: &mut Vec<u8>, token: &str) {
    write_escaped(out, token, true);
}

/// Writes a path's tokens, each after a `/` and escaped, as they are written in an operation.
fn write_path(out: &mut Vec<u8>, tokens: &[&str]) {
    for token in tokens {
        out.push(b'/');
        write_pointer_token(out, token);
    }
}

/// Writes the tokens of `parts` in turn, as one path.
fn write_path_of_parts(out: &mut Vec<u8>, parts: &[&[&str]]) {
    for tokens in parts {
        write_path(out, tokens);
    }
}

/// The path of a map or array whose items are added one operation each: its tokens, and
/// where in the patch they were first written escaped (copied from there for the next items,
/// with no buffer of their own).
struct ParentPath<'t> {
    tokens: &'t [&'t str],
    written: Option<Range<usize>>,
}

impl<'t> ParentPath<'t> {
    fn new(tokens: &'t [&'t str]) -> Self {
        ParentPath { tokens, written: None }
    }
}

/// A JSON Patch document, already serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerializedPatch {
    bytes: Vec<u8>,
    operations: usize,
}

// === impl SerializedPatch ===

impl SerializedPatch {
    /// The JSON array of operations (`[]` when empty).
    pub fn as_bytes(&self) -> &[u8] {
        if self.bytes.is_empty() { b"[]" } else { &self.bytes }
    }

    /// The bytes, to send.
    pub fn into_bytes(self) -> Vec<u8> {
        if self.bytes.is_empty() {
            b"[]".to_vec()
        } else {
            self.bytes
        }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.operations
    }

    /// Whether there is no operation.
    pub fn is_empty(&self) -> bool {
        self.operations == 0
    }

    /// The operations as `json_patch` values, to apply to a document (offline injection and
    /// tests).
    pub fn to_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_slice(self.as_bytes())
    }
}

/// Collects the operations of one patch.
#[derive(Debug, Default)]
pub struct PatchBuilder {
    bytes: Vec<u8>,
    operations: usize,
}

// === impl PatchBuilder ===

impl PatchBuilder {
    /// An empty patch.
    pub fn new() -> Self {
        PatchBuilder {
            bytes: Vec::with_capacity(16 * 1024),
            operations: 0,
        }
    }

    /// Adds `value` at the path made of `tokens` (escaped as needed).
    pub fn add(&mut self, tokens: &[&str], value: impl Serialize) {
        self.begin_add(tokens);
        self.write_value(value);
    }

    /// Adds `item`, written by hand, at the path made of the tokens of `parts` in turn (no
    /// list of them is made).
    pub(crate) fn add_written_at(&mut self, parts: &[&[&str]], item: &(impl WriteJson + ?Sized)) {
        self.open_operation("add");
        write_path_of_parts(&mut self.bytes, parts);
        self.close_path_start_value();
        self.write_item(item);
    }

    /// Writes `value` and closes the operation.
    fn write_value(&mut self, value: impl Serialize) {
        write_serialized(&mut self.bytes, &value);
        self.bytes.push(b'}');
    }

    /// Writes `item` and closes the operation.
    fn write_item(&mut self, item: &(impl WriteJson + ?Sized)) {
        item.write_json(&mut self.bytes);
        self.bytes.push(b'}');
    }

    /// Removes the value at the path made of `tokens`.
    pub fn remove(&mut self, tokens: &[&str]) {
        self.remove_at(&[tokens]);
    }

    /// Removes the value at the path made of the tokens of `parts` in turn.
    pub(crate) fn remove_at(&mut self, parts: &[&[&str]]) {
        self.open_operation("remove");
        write_path_of_parts(&mut self.bytes, parts);
        self.bytes.extend_from_slice(b"\"}");
    }

    /// Closes an open path's string and starts the operation's `"value":`.
    fn close_path_start_value(&mut self) {
        self.bytes.extend_from_slice(b"\",\"value\":");
    }

    /// Opens an operation object up to its path's last token, leaving the path's string open.
    fn open_path(&mut self, op: &str, tokens: &[&str]) {
        self.open_operation(op);
        write_path(&mut self.bytes, tokens);
    }

    /// Opens an operation object up to the start of its path's string.
    fn open_operation(&mut self, op: &str) {
        self.bytes.push(if self.operations == 0 { b'[' } else { b',' });
        self.operations += 1;
        self.bytes.extend_from_slice(b"{\"op\":\"");
        self.bytes.extend_from_slice(op.as_bytes());
        self.bytes.extend_from_slice(b"\",\"path\":\"");
    }

    /// Opens an `add` operation at the path of `parent` followed by `/` and the item's token,
    /// up to its `"value":`. The parent's path is escaped and written at its first item and
    /// copied from there for the others ([`ParentPath`]).
    fn begin_add_under(&mut self, parent: &mut ParentPath<'_>, token: impl FnOnce(&mut Vec<u8>)) {
        self.open_operation("add");
        match parent.written.clone() {
            Some(written) => self.bytes.extend_from_within(written),
            None => {
                let start = self.bytes.len();
                write_path(&mut self.bytes, parent.tokens);
                parent.written = Some(start..self.bytes.len());
            }
        }
        self.bytes.push(b'/');
        token(&mut self.bytes);
        self.close_path_start_value();
    }

    /// Opens an `add` operation up to its `"value":`, which the caller writes, then closes
    /// the operation with `}`.
    fn begin_add(&mut self, tokens: &[&str]) {
        self.open_path("add", tokens);
        self.close_path_start_value();
    }

    /// Sets string entries in the map at `map_path`, creating the map when `existing` is `None`.
    pub fn set_entries(
        &mut self,
        map_path: &[&str],
        existing: Option<&BTreeMap<String, String>>,
        entries: Vec<Entry<'_>>,
    ) {
        if entries.is_empty() {
            return;
        }
        match existing {
            None => {
                self.begin_add(map_path);
                for (index, (key, value)) in sorted_last_wins(entries).iter().enumerate() {
                    self.bytes.push(if index == 0 { b'{' } else { b',' });
                    write_json_string(&mut self.bytes, key);
                    self.bytes.push(b':');
                    value.write_json(&mut self.bytes);
                }
                // The object, then the operation.
                self.bytes.extend_from_slice(b"}}");
            }
            Some(_) => {
                let mut map = ParentPath::new(map_path);
                for (key, value) in &entries {
                    self.begin_add_under(&mut map, |out| write_pointer_token(out, key));
                    self.write_item(value);
                }
            }
        }
    }

    /// Inserts `items` into the array at `array_path` starting at `index` (or appends with
    /// `None`), creating the array when `existing_len` is `None`.
    pub fn insert_items<T: WriteJson>(
        &mut self,
        array_path: &[&str],
        existing_len: Option<usize>,
        index: Option<usize>,
        items: &[T],
    ) {
        if items.is_empty() {
            return;
        }
        let Some(len) = existing_len else {
            self.begin_add(array_path);
            self.write_item(items);
            return;
        };
        let mut array = ParentPath::new(array_path);
        match index {
            Some(start) if start < len => {
                for (offset, item) in items.iter().enumerate() {
                    // An index is its own pointer token; written with no String made for it.
                    self.begin_add_under(&mut array, |out| {
                        out.extend_from_slice(itoa::Buffer::new().format(start + offset).as_bytes());
                    });
                    self.write_item(item);
                }
            }
            _ => {
                for item in items {
                    self.begin_add_under(&mut array, |out| out.push(b'-'));
                    self.write_item(item);
                }
            }
        }
    }

    /// The finished patch.
    pub fn build(mut self) -> SerializedPatch {
        if self.operations > 0 {
            self.bytes.push(b']');
        } else {
            self.bytes.clear();
        }
        SerializedPatch {
            bytes: self.bytes,
            operations: self.operations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn apply(mut document: Value, builder: PatchBuilder) -> Value {
        json_patch::patch(&mut document, &builder.build().to_patch().unwrap()).unwrap();
        document
    }

    #[test]
    fn sorted_entries_keep_the_last_of_equal_keys() {
        let entries = vec![("b".to_string(), 1), ("a".to_string(), 2), ("b".to_string(), 3)];
        assert_eq!(
            sorted_last_wins(entries),
            vec![("a".to_string(), 2), ("b".to_string(), 3)]
        );
    }

    #[test]
    fn creates_absent_map_and_escapes_keys_in_existing_one() {
        let mut builder = PatchBuilder::new();
        builder.set_entries(&["metadata", "labels"], None, vec![("a/b".into(), "1".into())]);
        assert_eq!(
            apply(json!({"metadata": {}}), builder),
            json!({"metadata": {"labels": {"a/b": "1"}}})
        );

        let existing = BTreeMap::from([("keep".to_string(), "x".to_string())]);
        let mut builder = PatchBuilder::new();
        builder.set_entries(
            &["metadata", "labels"],
            Some(&existing),
            vec![
                ("sidecar.istio.io/status".into(), "{}".into()),
                ("a~b\"c".into(), "2".into()),
            ],
        );
        let patch = builder.build();
        let operations: Value = serde_json::from_slice(patch.as_bytes()).unwrap();
        assert_eq!(operations[0]["path"], "/metadata/labels/sidecar.istio.io~1status");
        assert_eq!(operations[1]["path"], "/metadata/labels/a~0b\"c");
        let mut result = json!({"metadata": {"labels": {"keep": "x"}}});
        json_patch::patch(&mut result, &patch.to_patch().unwrap()).unwrap();
        assert_eq!(
            result,
            json!({"metadata": {"labels": {"keep": "x", "sidecar.istio.io/status": "{}", "a~b\"c": "2"}}})
        );
    }

    #[test]
    fn a_json_value_is_written_as_the_same_document_as_text() {
        let document = json!({"containers": ["istio-proxy"], "note": "a \"quoted\" \\ word"});
        let as_text = serde_json::to_string(&document).unwrap();
        let mut builder = PatchBuilder::new();
        builder.set_entries(
            &["metadata", "annotations"],
            None,
            vec![
                ("json".into(), JsonText::of(&document).into()),
                ("text".into(), as_text.as_str().into()),
            ],
        );
        let result = apply(json!({"metadata": {}}), builder);
        assert_eq!(result["metadata"]["annotations"]["json"], as_text);
        assert_eq!(result["metadata"]["annotations"]["text"], as_text);
    }

    #[test]
    fn pointer_tokens_escape_for_the_pointer_and_for_json() {
        let keys = ["plain", "a/b~c", "quote\"back\\slash", "tab\tnew\nline", "é/ü"];
        let mut builder = PatchBuilder::new();
        builder.set_entries(
            &["metadata", "labels"],
            Some(&BTreeMap::new()),
            keys.iter().map(|key| ((*key).into(), "v".into())).collect(),
        );
        let patch = builder.build();
        let operations: Value = serde_json::from_slice(patch.as_bytes()).unwrap();
        assert_eq!(operations[1]["path"], "/metadata/labels/a~1b~0c");
        let mut result = json!({"metadata": {"labels": {}}});
        json_patch::patch(&mut result, &patch.to_patch().unwrap()).unwrap();
        for key in keys {
            assert_eq!(result["metadata"]["labels"][key], "v", "{key}");
        }
    }

    #[test]
    fn inserts_at_front_appends_or_creates_arrays() {
        let mut builder = PatchBuilder::new();
        builder.insert_items(&["list"], Some(2), Some(0), &[json!("x"), json!("y")]);
        builder.insert_items(&["list"], Some(4), None, &[json!("z")]);
        builder.insert_items(&["other"], None, Some(0), &[json!(1)]);
        builder.remove(&["gone"]);
        let patch = builder.build();
        assert_eq!(patch.len(), 5);
        let mut result = json!({"list": ["a", "b"], "gone": true});
        json_patch::patch(&mut result, &patch.to_patch().unwrap()).unwrap();
        assert_eq!(result, json!({"list": ["x", "y", "a", "b", "z"], "other": [1]}));
    }

    #[test]
    fn an_empty_patch_is_an_empty_array() {
        let patch = PatchBuilder::new().build();
        assert!(patch.is_empty());
        assert_eq!(patch.as_bytes(), b"[]");
        assert!(patch.to_patch().unwrap().0.is_empty());
    }
}
