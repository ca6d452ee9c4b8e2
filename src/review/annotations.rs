//! A Pod CREATE's annotations read as the engine needs them: those it may read
//! ([`read_by_engine`]) kept, the others (checksums, CI notes, tool bookkeeping) left out with
//! only their size counted, which the engine adds in when it measures the patched pod's
//! annotations against the API server's limit.
//!
//! Keys and values that need no unescaping are borrowed from the body while they are looked
//! at, so an annotation left out costs no allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::engine::annotations::read_by_engine;

/// The annotations kept, and the bytes of keys and values of those left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ReadAnnotations {
    /// The annotations the engine may read.
    pub(super) kept: BTreeMap<String, String>,
    /// Keys and values of the others.
    pub(super) unread_bytes: usize,
}

impl From<BTreeMap<String, String>> for ReadAnnotations {
    /// Annotations read whole: none left out.
    fn from(kept: BTreeMap<String, String>) -> Self {
        ReadAnnotations { kept, unread_bytes: 0 }
    }
}

impl<'de> Deserialize<'de> for ReadAnnotations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(AnnotationsVisitor)
    }
}

struct AnnotationsVisitor;

impl<'de> Visitor<'de> for AnnotationsVisitor {
    type Value = ReadAnnotations;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a map of annotations")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut read = ReadAnnotations::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if read_by_engine(&key) {
                let value: String = map.next_value()?;
                read.kept.insert(key.into_owned(), value);
            } else {
                let Text(value) = map.next_value::<Text<'de>>()?;
                read.unread_bytes += key.len() + value.len();
            }
        }
        Ok(read)
    }
}

/// A JSON string, borrowed from the body when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_the_engine_reads_and_counts_the_rest() {
        let text = r#"{"sidecar.istio.io/proxyCPU": "100m", "checksum/config": "abc", "team.example.com/note": "a \"quoted\" word", "prometheus.io/port": "9102"}"#;
        let read: ReadAnnotations = serde_json::from_str(text).unwrap();
        let kept: Vec<(&str, &str)> = read.kept.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            kept,
            [("prometheus.io/port", "9102"), ("sidecar.istio.io/proxyCPU", "100m")]
        );
        let unread = "checksum/config".len() + 3 + "team.example.com/note".len() + "a \"quoted\" word".len();
        assert_eq!(read.unread_bytes, unread);
    }

    #[test]
    fn a_value_that_is_not_a_string_is_refused_kept_or_not() {
        assert!(serde_json::from_str::<ReadAnnotations>(r#"{"note": 1}"#).is_err());
        assert!(serde_json::from_str::<ReadAnnotations>(r#"{"sidecar.istio.io/proxyCPU": null}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ReadAnnotations>("{}").unwrap(),
            ReadAnnotations::default()
        );
    }
}
