//! The API server's limit on the size of a pod's annotations, applied to the pod as the
//! patch leaves it.
//!
//! The API server refuses an object whose annotations' keys and values total more than
//! 256 KiB (`ValidateAnnotationsSize` in apimachinery's object-meta validation). The
//! annotations the injector adds (`sidecar.istio.io/status`, the provenance record and the
//! others) can push a pod that was valid on its own over it, so the engine measures the
//! annotations the patch leaves and refuses the pod itself, naming the figures, rather than
//! admit a pod the API server then rejects.

use std::collections::BTreeMap;

use crate::patch::{Entry, EntryValue};

/// apimachinery's `TotalAnnotationSizeLimitB`: the most the keys and values of one object's
/// annotations may total, in bytes.
pub const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

/// What the annotations of the patched pod total, and what of it the patch adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnnotationBytes {
    /// Keys and values of every annotation the patched pod has.
    pub total: usize,
    /// Of which, the keys and values the patch sets.
    pub added: usize,
}

impl AnnotationBytes {
    /// Whether the API server accepts annotations of this size.
    pub(crate) fn within_limit(&self) -> bool {
        self.total <= TOTAL_ANNOTATION_BYTES
    }
}

/// The pod's own annotations: those read, and the bytes of those the reader left out
/// (which the patch neither replaces nor removes: the engine reads every key it sets).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadAnnotations<'a> {
    /// The annotations read.
    pub read: Option<&'a BTreeMap<String, String>>,
    /// Keys and values of the others.
    pub unread_bytes: usize,
}

/// The size of the annotations the patch leaves, when it is over the limit: what
/// [`patched_from`] measures, after a bound that needs no key compared (the
/// pod's own and the added, escaped, with none replaced or removed) shows most pods clear.
/// The pod's own annotations are added up once, for both.
pub(crate) fn annotations_over_limit(
    existing: ReadAnnotations<'_>,
    added: &[Entry<'_>],
    removed: &[String],
) -> Option<AnnotationBytes> {
    let read = own_bytes(existing.read);
    let ours: usize = added
        .iter()
        .map(|(key, value)| key.len() + value_bytes_at_most(value))
        .sum();
    if read + existing.unread_bytes + ours <= TOTAL_ANNOTATION_BYTES {
        return None;
    }
    let mut bytes = patched_from(read, existing.read, added, removed);
    bytes.total += existing.unread_bytes;
    Some(bytes).filter(|bytes| !bytes.within_limit())
}

/// The size of the annotations a pod with `existing` has once `added` are set (the last of
/// equal keys wins, as the patch's operations apply in order) and `removed` are removed.
#[cfg(test)]
fn patched_annotation_bytes(
    existing: Option<&BTreeMap<String, String>>,
    added: &[Entry<'_>],
    removed: &[String],
) -> AnnotationBytes {
    patched_from(own_bytes(existing), existing, added, removed)
}

/// Keys and values of the pod's own annotations.
fn own_bytes(existing: Option<&BTreeMap<String, String>>) -> usize {
    existing
        .into_iter()
        .flatten()
        .map(|(key, value)| key.len() + value.len())
        .sum()
}

/// The size of the annotations a pod with `existing` has once `added` are set (the last of
/// equal keys wins, as the patch's operations apply in order) and `removed` are removed,
/// given `read`, what the pod's own annotations total: the
/// entries the patch replaces or removes are looked up, not the whole map compared.
fn patched_from(
    read: usize,
    existing: Option<&BTreeMap<String, String>>,
    added: &[Entry<'_>],
    removed: &[String],
) -> AnnotationBytes {
    let is_removed = |key: &str| removed.iter().any(|gone| gone == key);
    let touched: Vec<&str> = added
        .iter()
        .map(|(key, _)| key.as_ref())
        .chain(removed.iter().map(String::as_str))
        .collect();
    let replaced: usize = touched
        .iter()
        .enumerate()
        .filter(|&(index, key)| !touched[..index].contains(key))
        .filter_map(|(_, key)| existing?.get_key_value(*key))
        .map(|(key, value)| key.len() + value.len())
        .sum();
    let added_bytes: usize = added
        .iter()
        .enumerate()
        .filter(|&(index, (key, _))| !is_removed(key) && !added[index + 1..].iter().any(|(later, _)| later == key))
        .map(|(_, (key, value))| key.len() + value_bytes(value))
        .sum();
    AnnotationBytes {
        total: read.saturating_sub(replaced) + added_bytes,
        added: added_bytes,
    }
}

/// The length of an annotation value as stored (unescaped).
fn value_bytes(value: &EntryValue<'_>) -> usize {
    match value {
        EntryValue::Text(text) => text.len(),
        EntryValue::Json(json) => json.document_len(),
    }
}

/// At least the length of an annotation value as stored: its escaped length for JSON.
fn value_bytes_at_most(value: &EntryValue<'_>) -> usize {
    match value {
        EntryValue::Text(text) => text.len(),
        EntryValue::Json(json) => json.escaped_len(),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::json;

    use super::*;
    use crate::json_text::JsonText;

    fn existing(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn counts_keys_and_values_as_stored() {
        let status = json!({"containers": ["istio-proxy"], "note": "a \"quoted\" word\n"});
        let stored = serde_json::to_string(&status).unwrap();
        let added: Vec<Entry<'_>> = vec![
            (Cow::Borrowed("istio.io/rev"), EntryValue::from("default")),
            (
                Cow::Borrowed("sidecar.istio.io/status"),
                EntryValue::from(JsonText::of(&status)),
            ),
        ];
        let pod = existing(&[("team", "a"), ("build", "12345")]);
        let bytes = patched_annotation_bytes(Some(&pod), &added, &[]);
        let ours = "istio.io/rev".len() + "default".len() + "sidecar.istio.io/status".len() + stored.len();
        assert_eq!(bytes.added, ours);
        assert_eq!(bytes.total, ours + "team".len() + 1 + "build".len() + 5);
    }

    #[test]
    fn replaced_and_removed_annotations_count_once_or_not_at_all() {
        let pod = existing(&[
            ("example.com/port", "9102"),
            ("example.com/targets", "xyz"),
            ("keep", "k"),
        ]);
        let added: Vec<Entry<'_>> = vec![
            (Cow::Borrowed("example.com/port"), EntryValue::from("15020")),
            (Cow::Borrowed("twice"), EntryValue::from("first value")),
            (Cow::Borrowed("twice"), EntryValue::from("v")),
        ];
        let bytes = patched_annotation_bytes(Some(&pod), &added, &["example.com/targets".to_string()]);
        let ours = "example.com/port".len() + 5 + "twice".len() + 1;
        assert_eq!(bytes.added, ours);
        assert_eq!(bytes.total, ours + "keep".len() + 1);
    }

    #[test]
    fn a_key_both_set_and_removed_is_taken_off_the_pods_total_once() {
        let pod = existing(&[("example.com/a", "xx"), ("keep", "k")]);
        let added: Vec<Entry<'_>> = vec![(Cow::Borrowed("example.com/a"), EntryValue::from("y"))];
        let bytes = patched_annotation_bytes(Some(&pod), &added, &["example.com/a".to_string()]);
        assert_eq!(
            bytes,
            AnnotationBytes {
                total: "keep".len() + 1,
                added: 0
            }
        );
    }

    fn read(pod: &BTreeMap<String, String>) -> ReadAnnotations<'_> {
        ReadAnnotations {
            read: Some(pod),
            unread_bytes: 0,
        }
    }

    #[test]
    fn annotations_left_unread_count_toward_the_limit() {
        let pod = existing(&[("sidecar.istio.io/proxyCPU", "100m")]);
        let adding: Vec<Entry<'_>> = vec![(Cow::Borrowed("n"), EntryValue::from("v"))];
        let own = "sidecar.istio.io/proxyCPU".len() + 4;
        let fits = ReadAnnotations {
            read: Some(&pod),
            unread_bytes: TOTAL_ANNOTATION_BYTES - own - 2,
        };
        assert_eq!(annotations_over_limit(fits, &adding, &[]), None);
        let over = ReadAnnotations {
            unread_bytes: fits.unread_bytes + 1,
            ..fits
        };
        assert_eq!(
            annotations_over_limit(over, &adding, &[]),
            Some(AnnotationBytes {
                total: TOTAL_ANNOTATION_BYTES + 1,
                added: 2
            })
        );
    }

    #[test]
    fn over_limit_only_when_the_exact_size_is() {
        let room = TOTAL_ANNOTATION_BYTES - "big".len() - "example.com/note".len();
        let pod = existing(&[("big", &"x".repeat(room - 10)), ("example.com/note", "0123456789")]);
        let replacing: Vec<Entry<'_>> = vec![(Cow::Borrowed("example.com/note"), EntryValue::from("abcdefghij"))];
        assert_eq!(
            annotations_over_limit(read(&pod), &replacing, &[]),
            None,
            "a replaced value counts once"
        );
        let adding: Vec<Entry<'_>> = vec![(Cow::Borrowed("n"), EntryValue::from("v"))];
        assert_eq!(
            annotations_over_limit(read(&pod), &adding, &[]),
            Some(AnnotationBytes {
                total: TOTAL_ANNOTATION_BYTES + 2,
                added: 2
            })
        );
        let removing = ["example.com/note".to_string()];
        assert_eq!(annotations_over_limit(read(&pod), &adding, &removing), None);
    }

    #[test]
    fn the_limit_is_inclusive() {
        let at = AnnotationBytes {
            total: TOTAL_ANNOTATION_BYTES,
            added: 10,
        };
        assert!(at.within_limit());
        assert!(
            !AnnotationBytes {
                total: TOTAL_ANNOTATION_BYTES + 1,
                ..at
            }
            .within_limit()
        );
    }
}
