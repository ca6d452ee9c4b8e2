//! RFC 6902 operations built from what the engine adds, never from a diff of whole pods.
//!
//! The engine knows exactly what it adds, so it writes `add` operations directly: one per
//! container, volume, label and annotation. A map or array that is absent is created in
//! one operation; one that exists is extended item by item and never replaced, so fields
//! written by other webhooks survive. Keys are escaped (`/` as `~1`) by `jsonptr`.

use std::collections::BTreeMap;

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use jsonptr::PointerBuf;
use serde_json::{Map, Value};

/// Collects the operations of one patch.
#[derive(Debug, Default)]
pub struct PatchBuilder {
    operations: Vec<PatchOperation>,
}

// === impl PatchBuilder ===

impl PatchBuilder {
    /// An empty patch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` at the path made of `tokens` (escaped as needed).
    pub fn add(&mut self, tokens: &[&str], value: Value) {
        self.operations.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        }));
    }

    /// Removes the value at the path made of `tokens`.
    pub fn remove(&mut self, tokens: &[&str]) {
        self.operations.push(PatchOperation::Remove(RemoveOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
        }));
    }

    /// Sets string entries in the map at `map_path`, creating the map when `existing` is `None`.
    pub fn set_entries(
        &mut self,
        map_path: &[&str],
        existing: Option<&BTreeMap<String, String>>,
        entries: Vec<(String, String)>,
    ) {
        if entries.is_empty() {
            return;
        }
        match existing {
            None => {
                let map: Map<String, Value> = entries.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                self.add(map_path, Value::Object(map));
            }
            Some(_) => {
                let mut tokens = map_path.to_vec();
                for (key, value) in &entries {
                    tokens.push(key);
                    self.add(&tokens, Value::String(value.clone()));
                    tokens.pop();
                }
            }
        }
    }

    /// Inserts `items` into the array at `array_path` starting at `index` (or appends with
    /// `None`), creating the array when `existing_len` is `None`.
    pub fn insert_items(
        &mut self,
        array_path: &[&str],
        existing_len: Option<usize>,
        index: Option<usize>,
        items: Vec<Value>,
    ) {
        if items.is_empty() {
            return;
        }
        let Some(len) = existing_len else {
            self.add(array_path, Value::Array(items));
            return;
        };
        match index {
            Some(start) if start < len => {
                for (offset, item) in items.into_iter().enumerate() {
                    let position = (start + offset).to_string();
                    let mut tokens = array_path.to_vec();
                    tokens.push(&position);
                    self.add(&tokens, item);
                }
            }
            _ => {
                let mut tokens = array_path.to_vec();
                tokens.push("-");
                for item in items {
                    self.add(&tokens, item);
                }
            }
        }
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether no operation was added.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The finished patch.
    pub fn build(self) -> Patch {
        Patch(self.operations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(mut document: Value, builder: PatchBuilder) -> Value {
        json_patch::patch(&mut document, &builder.build()).unwrap();
        document
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
            vec![("sidecar.istio.io/status".into(), "{}".into())],
        );
        let PatchOperation::Add(operation) = &builder.operations[0] else {
            panic!("not an add")
        };
        assert_eq!(operation.path.as_str(), "/metadata/labels/sidecar.istio.io~1status");
        let result = apply(json!({"metadata": {"labels": {"keep": "x"}}}), builder);
        assert_eq!(
            result,
            json!({"metadata": {"labels": {"keep": "x", "sidecar.istio.io/status": "{}"}}})
        );
    }

    #[test]
    fn inserts_at_front_appends_or_creates_arrays() {
        let mut builder = PatchBuilder::new();
        builder.insert_items(&["list"], Some(2), Some(0), vec![json!("x"), json!("y")]);
        builder.insert_items(&["list"], Some(4), None, vec![json!("z")]);
        builder.insert_items(&["other"], None, Some(0), vec![json!(1)]);
        let result = apply(json!({"list": ["a", "b"]}), builder);
        assert_eq!(result, json!({"list": ["x", "y", "a", "b", "z"], "other": [1]}));
    }
}
