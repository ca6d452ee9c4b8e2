//! YAML text to JSON values and back.
//!
//! Reading follows the YAML 1.2 core schema (`yes`, `on`, `0644` and `1_000` stay strings),
//! keeps the last of repeated keys, as the API server does, and expands `<<` merge keys, as
//! `kubectl` does. Writing quotes every string a YAML 1.1 reader would take for something
//! else.

use serde_json::Value;

/// Why a manifest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML; the message names the line and column.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// A value could not be written as YAML.
    #[error("cannot write YAML: {0}")]
    Write(String),
}

/// The parser settings every manifest is read with; see the module docs.
fn read_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        with_snippet: false,
    }
}

/// Every non-empty YAML document in `text`, in order (`null` and empty documents are dropped).
pub fn read_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    serde_saphyr::from_multiple_with_options(text, read_options())
        .map(|documents: Vec<Value>| documents.into_iter().filter(|document| !document.is_null()).collect())
        .map_err(|error| ManifestError::Yaml(error.to_string()))
}

/// `documents` as YAML, separated by `---` lines.
pub fn write_documents(documents: &[Value]) -> Result<String, ManifestError> {
    serde_saphyr::to_string_multiple(documents).map_err(|error| ManifestError::Write(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_many_documents_as_the_yaml_core_schema_and_skips_empty_ones() {
        let text = "a: yes\nb: 0644\nc: 1_000\nd: on\ne: 3\n---\n---\n~\n---\nbase: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\nkey: 1\nkey: 2\n";
        let documents = read_documents(text).unwrap();
        assert_eq!(
            documents,
            [
                json!({"a": "yes", "b": "0644", "c": "1_000", "d": "on", "e": 3}),
                json!({"base": {"x": 1}, "merged": {"x": 1, "y": 2}, "key": 2}),
            ]
        );
    }

    #[test]
    fn written_documents_read_back_the_same() {
        let documents = [
            json!({"strings": ["yes", "on", "y", "0644", "1.0", "", "null", "~", "2001-12-14", "a: b", "two\nlines\n", "  lead"]}),
            json!({"number": 5, "float": 1.5, "empty": {}, "list": [], "long": "x".repeat(200)}),
        ];
        let text = write_documents(&documents).unwrap();
        assert!(text.contains("\n---\n"), "{text}");
        assert_eq!(read_documents(&text).unwrap(), documents);
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let error = read_documents("a: 1\n---\nb: [1\n").unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
    }
}
