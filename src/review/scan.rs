//! One pass over a request body before serde reads it: the JSON grammar checked, the
//! nesting measured, and the values found that the one-pass read of a Pod CREATE never uses.
//!
//! serde_json checks every byte of a value it skips, one token at a time: a typical pod's
//! `metadata.managedFields` is half its body, and an app container's `env` can be far more.
//! This pass checks the whole body once, by the same grammar, and reports where those values
//! are ([`Place::omits`]). The one-pass read then gets a copy of the body with each of them
//! replaced by `0`. A `0` is skipped in one step, and it fails any typed read that would take
//! the place of a skip, so a reader that starts reading such a field is sent down the full
//! read instead of seeing a wrong value. A body this pass refuses is read as sent, and serde
//! words the error.
//!
//! An omitted value is checked by a loop of its own ([`skip_value`]), which tracks no places
//! and keeps its containers' kinds one bit each.
//!
//! Only keys written without escapes are recognized; an escaped key is read as sent.

use std::ops::Range;

use crate::engine::json_bytes::plain_run_end;

/// serde_json's own depth limit for the values it builds, applied to the whole body: the
/// fields serde skips are skipped without one, and no pod nests anywhere near this deep.
pub(super) const MAX_NESTING: usize = 128;

/// The keys [`Place::omits`] leaves out, as a list the tests check it against: each names the
/// place of the object holding the key, and the key. None is read by the one-pass read
/// (`parse::Request`, `object::PodMetadata`, `pod_spec::ReadSpec`, `pod_spec::ReadContainer`).
#[cfg(test)]
const OMITTED: [(Place, &str); 13] = [
    (Place::Request, "userInfo"),
    (Place::Request, "options"),
    (Place::Request, "requestResource"),
    (Place::Request, "resource"),
    (Place::Metadata, "managedFields"),
    (Place::Spec, "tolerations"),
    (Place::Spec, "affinity"),
    (Place::Spec, "topologySpreadConstraints"),
    (Place::Container, "env"),
    (Place::Container, "envFrom"),
    (Place::Container, "args"),
    (Place::Container, "command"),
    (Place::Container, "volumeMounts"),
];

/// The places in an AdmissionReview that hold a key left out ([`Place::omits`]), or lead to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Anywhere else.
    Other,
    /// The AdmissionReview.
    Review,
    /// `request`.
    Request,
    /// `request.object`.
    Object,
    /// `request.object.metadata`.
    Metadata,
    /// `request.object.spec`.
    Spec,
    /// `spec.containers` or `spec.initContainers`.
    ContainerList,
    /// One of their items.
    Container,
}

impl Place {
    /// The place of the value under `key` in an object at this place.
    fn child(self, key: &[u8]) -> Place {
        match (self, key) {
            (Place::Review, b"request") => Place::Request,
            (Place::Request, b"object") => Place::Object,
            (Place::Object, b"metadata") => Place::Metadata,
            (Place::Object, b"spec") => Place::Spec,
            (Place::Spec, b"containers" | b"initContainers") => Place::ContainerList,
            _ => Place::Other,
        }
    }

    /// The place of an item of an array at this place.
    fn item(self) -> Place {
        match self {
            Place::ContainerList => Place::Container,
            _ => Place::Other,
        }
    }

    /// Whether the value under `key` in an object at this place is left out of the one-pass
    /// read. A `match`, which compiles to a switch on the length rather than a search of a
    /// list; a test checks it against `OMITTED`.
    #[inline]
    fn omits(self, key: &[u8]) -> bool {
        matches!(
            (self, key),
            (
                Place::Request,
                b"userInfo" | b"options" | b"requestResource" | b"resource"
            ) | (Place::Metadata, b"managedFields")
                | (Place::Spec, b"tolerations" | b"affinity" | b"topologySpreadConstraints")
                | (
                    Place::Container,
                    b"env" | b"envFrom" | b"args" | b"command" | b"volumeMounts"
                )
        )
    }
}

/// Room for this many omitted values is made at once: a pod of three containers has about
/// a dozen (four of the request's, `managedFields`, and two or so a container).
const OMISSIONS_RESERVED: usize = 16;

/// What the pass found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scanned {
    /// The body is JSON; these byte ranges are the values left out, in order.
    Json(Vec<Range<usize>>),
    /// The body is not JSON; serde reads it and words the error.
    NotJson,
    /// The body nests deeper than [`MAX_NESTING`] at this offset, before any other error.
    TooDeep(usize),
}

/// Checks `body` (already known to be UTF-8) and finds the values left out.
pub(super) fn scan(body: &[u8]) -> Scanned {
    let mut scanner = Scanner {
        depth: 0,
        frames: [Frame {
            object: false,
            place: Place::Other,
        }; MAX_NESTING],
        omitted: Vec::with_capacity(OMISSIONS_RESERVED),
    };
    match scanner.document(body) {
        Ok(()) => Scanned::Json(scanner.omitted),
        Err(Stop::NotJson) => Scanned::NotJson,
        Err(Stop::TooDeep(at)) => Scanned::TooDeep(at),
    }
}

/// The body with each range replaced by `0`; `None` if a range does not fall on character
/// boundaries (it always does: ranges start and end at ASCII bytes of the grammar).
pub(super) fn without(text: &str, ranges: &[Range<usize>]) -> Option<String> {
    let mut kept = String::with_capacity(text.len());
    let mut from = 0;
    for range in ranges {
        kept.push_str(text.get(from..range.start)?);
        kept.push('0');
        from = range.end;
    }
    kept.push_str(text.get(from..)?);
    Some(kept)
}

/// Why the pass stopped early.
enum Stop {
    NotJson,
    /// At this offset.
    TooDeep(usize),
}

/// One open object or array.
#[derive(Clone, Copy)]
struct Frame {
    /// An object, not an array.
    object: bool,
    place: Place,
}

/// What the pass holds besides its offset, which its loop keeps to itself.
struct Scanner {
    /// Containers open.
    depth: usize,
    /// The container open at each depth (index `depth - 1`).
    frames: [Frame; MAX_NESTING],
    omitted: Vec<Range<usize>>,
}

impl Scanner {
    /// One value and nothing after it but whitespace, read iteratively: each turn of the
    /// loop reads one value at `place` (an omitted one in one call, [`skip_value`]), then
    /// closes the containers that end after it.
    fn document(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let (mut at, mut place, mut omit) = (0, Place::Review, false);
        'value: loop {
            at = whitespace(bytes, at);
            if omit {
                let end = skip_value(bytes, at, self.depth)?;
                self.omitted.push(at..end);
                at = end;
            } else {
                match bytes.get(at) {
                    Some(&open @ (b'{' | b'[')) => {
                        let object = open == b'{';
                        self.open(place, object, at)?;
                        at = whitespace(bytes, at + 1);
                        if bytes.get(at) == Some(&(open + 2)) {
                            // `}` and `]` follow `{` and `[` two places on.
                            at += 1;
                            self.depth -= 1;
                        } else if object {
                            (at, place, omit) = self.key(bytes, at)?;
                            continue 'value;
                        } else {
                            (place, omit) = (place.item(), false);
                            continue 'value;
                        }
                    }
                    _ => at = scalar_end(bytes, at)?,
                }
            }
            while self.depth > 0 {
                at = whitespace(bytes, at);
                let in_object = self.frames.get(self.depth - 1).is_some_and(|frame| frame.object);
                match (bytes.get(at), in_object) {
                    (Some(b','), true) => {
                        (at, place, omit) = self.key(bytes, whitespace(bytes, at + 1))?;
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        (at, place, omit) = (at + 1, self.place().item(), false);
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        at += 1;
                        self.depth -= 1;
                    }
                    _ => return Err(Stop::NotJson),
                }
            }
            break;
        }
        at = whitespace(bytes, at);
        if at == bytes.len() { Ok(()) } else { Err(Stop::NotJson) }
    }

    /// An object key at `at` and its colon: the offset after them, the place of the key's
    /// value, and whether it is omitted.
    #[inline(always)]
    fn key(&mut self, bytes: &[u8], at: usize) -> Result<(usize, Place, bool), Stop> {
        let (key, after) = key_end(bytes, at)?;
        let parent = self.place();
        if parent == Place::Other || key.contains(&b'\\') {
            return Ok((after, Place::Other, false));
        }
        Ok((after, parent.child(key), parent.omits(key)))
    }

    /// The place of the innermost open container.
    #[inline]
    fn place(&self) -> Place {
        match self.depth.checked_sub(1) {
            Some(index) => self.frames.get(index).map_or(Place::Other, |frame| frame.place),
            None => Place::Other,
        }
    }

    /// Opens an object or array at `place`, whose first byte is at `at`.
    #[inline]
    fn open(&mut self, place: Place, object: bool, at: usize) -> Result<(), Stop> {
        if self.depth == MAX_NESTING {
            return Err(Stop::TooDeep(at));
        }
        if let Some(frame) = self.frames.get_mut(self.depth) {
            *frame = Frame { object, place };
        }
        self.depth += 1;
        Ok(())
    }
}

/// The offset after the value at `at` (no whitespace before it), one that the one-pass read
/// leaves out, with `depth` containers open around it: checked by the same grammar as the
/// rest of the body, with no place to track, its containers' kinds kept one bit each.
fn skip_value(bytes: &[u8], mut at: usize, depth: usize) -> Result<usize, Stop> {
    // Bit `i` is set when the container opened `i` levels below the innermost is an object.
    let mut objects: u128 = 0;
    let mut open = 0;
    'value: loop {
        match bytes.get(at) {
            Some(&bracket @ (b'{' | b'[')) => {
                if depth + open == MAX_NESTING {
                    return Err(Stop::TooDeep(at));
                }
                let object = bracket == b'{';
                objects = (objects << 1) | u128::from(object);
                open += 1;
                at = whitespace(bytes, at + 1);
                if bytes.get(at) == Some(&(bracket + 2)) {
                    at += 1;
                    objects >>= 1;
                    open -= 1;
                } else if object {
                    at = whitespace(bytes, key_end(bytes, at)?.1);
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            _ => at = scalar_end(bytes, at)?,
        }
        while open > 0 {
            at = whitespace(bytes, at);
            let in_object = objects & 1 == 1;
            match (bytes.get(at), in_object) {
                (Some(b','), true) => {
                    at = whitespace(bytes, key_end(bytes, whitespace(bytes, at + 1))?.1);
                    continue 'value;
                }
                (Some(b','), false) => {
                    at = whitespace(bytes, at + 1);
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    at += 1;
                    objects >>= 1;
                    open -= 1;
                }
                _ => return Err(Stop::NotJson),
            }
        }
        return Ok(at);
    }
}

/// An object key at `at` and the colon after it: the key's text as written, and the offset
/// after the colon.
#[inline(always)]
fn key_end(bytes: &[u8], at: usize) -> Result<(&[u8], usize), Stop> {
    if bytes.get(at) != Some(&b'"') {
        return Err(Stop::NotJson);
    }
    let end = string_end(bytes, at + 1).ok_or(Stop::NotJson)?;
    let colon = whitespace(bytes, end);
    if bytes.get(colon) != Some(&b':') {
        return Err(Stop::NotJson);
    }
    Ok((bytes.get(at + 1..end - 1).unwrap_or_default(), colon + 1))
}

/// The offset after the string, number, `true`, `false` or `null` at `at`.
#[inline(always)]
fn scalar_end(bytes: &[u8], at: usize) -> Result<usize, Stop> {
    match bytes.get(at) {
        Some(b'"') => string_end(bytes, at + 1),
        Some(b'-' | b'0'..=b'9') => number_end(bytes, at),
        Some(b't') => literal_end(bytes, at, b"true"),
        Some(b'f') => literal_end(bytes, at, b"false"),
        Some(b'n') => literal_end(bytes, at, b"null"),
        _ => None,
    }
    .ok_or(Stop::NotJson)
}

/// The offset after the string whose opening quote is before `at`. Always inlined: called
/// once per string, its constants and saved registers otherwise cost more than a short
/// string's bytes.
#[inline(always)]
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        at = plain_run_end(bytes, at);
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at = escape_end(bytes, at)?,
            _ => return None,
        }
    }
}

/// The offset after the escape sequence whose backslash is at `at`: `\"`, `\\`, `\/`,
/// `\b`, `\f`, `\n`, `\r`, `\t` or `\u` and four hex digits (serde_json checks no more of a
/// string it skips).
#[inline]
fn escape_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 2),
        b'u' if bytes.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) => Some(at + 6),
        _ => None,
    }
}

/// The offset after the number at `at`: `-`, then `0` or digits not starting with `0`, then
/// an optional fraction and exponent, each with at least one digit.
#[inline]
fn number_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'-') {
        at += 1;
    }
    at = match bytes.get(at) {
        Some(b'0') => at + 1,
        Some(b'1'..=b'9') => digits_end(bytes, at),
        _ => return None,
    };
    if bytes.get(at) == Some(&b'.') {
        at = some_digits_end(bytes, at + 1)?;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        at = some_digits_end(bytes, at)?;
    }
    Some(at)
}

/// The offset after one digit or more at `at`.
fn some_digits_end(bytes: &[u8], at: usize) -> Option<usize> {
    bytes.get(at)?.is_ascii_digit().then(|| digits_end(bytes, at))
}

/// The offset after the digits at `at`.
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(at) {
        at += 1;
    }
    at
}

/// The offset after `word` (`true`, `false` or `null`) at `at`.
fn literal_end(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    (bytes.get(at..at + word.len())? == word).then_some(at + word.len())
}

/// The offset of the first byte at or after `at` that is not whitespace.
#[inline]
fn whitespace(bytes: &[u8], mut at: usize) -> usize {
    while let Some(&byte) = bytes.get(at) {
        // One comparison for the usual case, a byte of the grammar or of a value.
        if byte > b' ' || !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            break;
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::de::IgnoredAny;
    use serde_json::{Value, json};

    use super::*;

    /// Whether serde_json reads `text` as one JSON value (what it checks of values it skips).
    fn serde_reads(text: &str) -> bool {
        serde_json::from_str::<IgnoredAny>(text).is_ok()
    }

    fn omitted_of(text: &str) -> Vec<Range<usize>> {
        match scan(text.as_bytes()) {
            Scanned::Json(omitted) => omitted,
            other => panic!("{other:?} for {text}"),
        }
    }

    #[test]
    fn the_omitted_values_are_exactly_the_ones_the_one_pass_read_never_uses() {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "userInfo": {"username": "system:admin", "groups": ["system:masters"]},
                "options": {"kind": "CreateOptions"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                "object": {
                    "metadata": {
                        "name": "web",
                        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"k:{\"name\":\"app\"}": {}}}}],
                        "labels": {"env": "x", "managedFields": "kept: a label"},
                    },
                    "spec": {
                        "containers": [
                            {"name": "app", "env": [{"name": "A", "value": "]}\"{["}], "args": ["--x"],
                             "command": ["run"], "envFrom": [], "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                             "image": "nginx", "resources": {"limits": {"cpu": "1"}}},
                            {"name": "second", "env": null},
                        ],
                        "initContainers": [{"name": "init", "args": "not a list"}],
                        "ephemeralContainers": [{"name": "debug", "env": []}],
                        "volumes": [{"name": "env", "env": "kept: not a container"}],
                        "tolerations": [{"key": "k", "operator": "Exists"}],
                        "affinity": {"nodeAffinity": {}},
                        "topologySpreadConstraints": [],
                    },
                },
                "oldObject": {"metadata": {"managedFields": []}},
            },
            "managedFields": "kept: not in the object",
        });
        let text = serde_json::to_string(&review).unwrap();
        let shortened = without(&text, &omitted_of(&text)).unwrap();
        let mut expected = review.clone();
        for key in ["userInfo", "options", "resource", "requestResource"] {
            expected["request"][key] = json!(0);
        }
        let object = &mut expected["request"]["object"];
        object["metadata"]["managedFields"] = json!(0);
        for key in ["env", "args", "command", "envFrom", "volumeMounts"] {
            object["spec"]["containers"][0][key] = json!(0);
        }
        object["spec"]["containers"][1]["env"] = json!(0);
        object["spec"]["initContainers"][0]["args"] = json!(0);
        for key in ["tolerations", "affinity", "topologySpreadConstraints"] {
            object["spec"][key] = json!(0);
        }
        assert_eq!(serde_json::from_str::<Value>(&shortened).unwrap(), expected);
        // The same document spaced out reads the same.
        let pretty = serde_json::to_string_pretty(&review).unwrap();
        let shortened = without(&pretty, &omitted_of(&pretty)).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&shortened).unwrap(), expected);
    }

    #[test]
    fn the_zero_left_in_place_fails_every_typed_read_of_those_fields() {
        use k8s_openapi::api::core::v1::Container;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        for key in ["env", "envFrom", "args", "command", "volumeMounts"] {
            let container = json!({"name": "app", key: 0});
            assert!(serde_json::from_value::<Container>(container).is_err(), "{key}");
        }
        assert!(serde_json::from_value::<ObjectMeta>(json!({"managedFields": 0})).is_err());
    }

    #[test]
    fn the_match_omits_exactly_the_listed_keys() {
        let places = [
            Place::Other,
            Place::Review,
            Place::Request,
            Place::Object,
            Place::Metadata,
            Place::Spec,
            Place::ContainerList,
            Place::Container,
        ];
        let keys = OMITTED
            .iter()
            .map(|&(_, key)| key)
            .chain(["", "x", "en", "envs", "spec"]);
        for place in places {
            for key in keys.clone() {
                let listed = OMITTED.contains(&(place, key));
                assert_eq!(place.omits(key.as_bytes()), listed, "{place:?} {key}");
            }
        }
    }

    #[test]
    fn an_escaped_key_is_never_omitted() {
        let text = r#"{"request":{"object":{"metadata":{"managed\u0046ields":[1],"managedFields":[2]}}}}"#;
        let omitted = omitted_of(text);
        assert_eq!(omitted.len(), 1);
        assert_eq!(&text[omitted[0].clone()], "[2]");
    }

    #[test]
    fn nesting_is_limited_as_serde_json_limits_it() {
        let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(matches!(scan(deep(MAX_NESTING).as_bytes()), Scanned::Json(_)));
        assert_eq!(scan(deep(MAX_NESTING + 1).as_bytes()), Scanned::TooDeep(MAX_NESTING));
        let in_strings = format!(r#"{{"a": "{}", "b": "\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(matches!(scan(in_strings.as_bytes()), Scanned::Json(_)));
        // Inside an omitted value too, the whole body's nesting counts: `managedFields` sits
        // at depth 4 (the review, `request`, `object`, `metadata`).
        let prefix = r#"{"request":{"object":{"metadata":{"managedFields":"#;
        let omitted = |depth: usize| format!("{prefix}{}{}", deep(depth), "}".repeat(4));
        let at_limit = omitted(MAX_NESTING - 4);
        let start = prefix.len();
        let omission = start..start + 2 * (MAX_NESTING - 4);
        assert_eq!(scan(at_limit.as_bytes()), Scanned::Json(Vec::from([omission])));
        let over = omitted(MAX_NESTING - 3);
        assert_eq!(scan(over.as_bytes()), Scanned::TooDeep(start + MAX_NESTING - 4));
    }

    #[test]
    fn the_grammar_is_serde_jsons_on_hand_picked_cases() {
        let cases = [
            "0",
            "-0",
            "01",
            "-",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1E-7",
            "1e400",
            "-12.5e3",
            "+1",
            "true",
            "tru",
            "nul",
            "null ",
            " [ ] ",
            "[1,]",
            "[,1]",
            "{}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "\"\\u12G4\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\/\"",
            "\"a\tb\"",
            "\"a\u{7f}b\"",
            "\"\u{e9}\"",
            "[1]x",
            "[1] [2]",
            "",
            " ",
            "\"unterminated",
            "\"12345678\\",
            "{\"a\":[1,{\"b\":\"c\"}]}",
            "[\"\\\"\"]",
        ];
        for case in cases {
            let scanned = matches!(scan(case.as_bytes()), Scanned::Json(_));
            assert_eq!(scanned, serde_reads(case), "{case:?}");
        }
    }

    /// Pieces JSON is made of, valid and not, to build documents from.
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
            "\\\"",
            "\\u00e9",
            "\\uZZ",
            "\\n",
            "\\q",
            "\t",
            "\u{1}",
            "a",
            "é",
            "0",
            "-",
            "1",
            "12",
            "0.5",
            ".",
            "e",
            "E+",
            "true",
            "false",
            "null",
            "nul",
            "\"managedFields\"",
            "\"request\"",
            "\"object\"",
            "\"env\"",
            "\"metadata\"",
            "\"spec\"",
            "\"containers\"",
            "\"k\":",
            "\"s\"",
            "{\"a\":1}",
            "[1,2]",
        ])
    }

    /// Documents: a valid JSON value with random pieces spliced in.
    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\\u{1}é/]{0,12}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "request",
                        "object",
                        "metadata",
                        "managedFields",
                        "spec",
                        "containers",
                        "env",
                        "x"
                    ]),
                    inner,
                    0..6
                )
                .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        });
        (
            value,
            prop::collection::vec((any::<prop::sample::Index>(), piece()), 0..3),
        )
            .prop_map(|(value, splices)| {
                let mut text = serde_json::to_string(&value).unwrap();
                for (index, piece) in splices {
                    let mut at = index.index(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    text.insert_str(at, piece);
                }
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The pass accepts exactly what serde_json reads, and every omitted range is one
        /// whole value: cut out alone, it reads as JSON.
        #[test]
        fn the_pass_accepts_what_serde_json_reads(text in document()) {
            match scan(text.as_bytes()) {
                Scanned::Json(omitted) => {
                    prop_assert!(serde_reads(&text), "accepted, serde refuses: {text:?}");
                    for range in omitted {
                        prop_assert!(serde_reads(&text[range.clone()]), "omitted {range:?} of {text:?}");
                    }
                }
                Scanned::NotJson => prop_assert!(!serde_reads(&text), "refused, serde reads: {text:?}"),
                Scanned::TooDeep(_) => prop_assert!(false, "too deep: {text:?}"),
            }
        }
    }
}
