//! The bad-input corpus (`tests/fixtures/bad-input/cases.json`) over the real HTTPS server:
//! each case's body comes from a file, from a JSON patch applied to a good review, or from a
//! generator here (for bodies too big or too odd to keep as files). Each case names the
//! answer it must get: the HTTP status, for 200 whether the pod is allowed and patched, and
//! a substring of the message. No case may panic the server, every answered patch must
//! apply to the pod and give a valid one, and the server must keep serving afterwards.
//!
//! `BAD_INPUT_PRINT=1 cargo test --test bad_input -- --nocapture` prints what each case got.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestServer, apply_and_check, patch_of, pod_review, simple_pod};
use serde::Deserialize;
use serde_json::{Value, json};
use sidecar_injector::config::InjectConfig;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad-input");

/// One case of `cases.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// A raw body under `bodies/`.
    file: Option<String>,
    /// RFC 6902 operations applied to the good review.
    patch: Option<json_patch::Patch>,
    /// A generator below.
    generate: Option<String>,
    /// The Content-Type to send; "" for none; default JSON.
    content_type: Option<String>,
    status: u16,
    /// For 200: whether the pod is allowed.
    allowed: Option<bool>,
    /// For 200: whether a patch comes back.
    injected: Option<bool>,
    /// A substring of the text answer, or of the denial message and warnings.
    message: Option<String>,
}

/// A good review whose uid is the case name.
fn good_review(uid: &str) -> Value {
    pod_review(uid, "apps", &simple_pod(json!({})))
}

/// `good_review` with `marker` (a JSON string value somewhere in it) replaced by raw `bytes`.
fn splice(review: &Value, marker: &str, bytes: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(review).unwrap();
    let needle = format!("\"{marker}\"");
    let at = text
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
        .expect("marker");
    [&text[..at], bytes, &text[at + needle.len()..]].concat()
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    [vec![b'['; depth], vec![b']'; depth]].concat()
}

fn with_annotation(uid: &str, key: &str, value: Value) -> Value {
    let mut review = good_review(uid);
    review["request"]["object"]["metadata"]["annotations"][key] = value;
    review
}

fn generate(name: &str, uid: &str) -> Vec<u8> {
    let good = good_review(uid);
    let good_bytes = serde_json::to_vec(&good).unwrap();
    match name {
        "truncated-half" => good_bytes[..good_bytes.len() / 2].to_vec(),
        "trailing-garbage" => [&good_bytes[..], b"xyz"].concat(),
        "two-documents" => [&good_bytes[..], b"\n", &good_bytes[..]].concat(),
        "not-utf8-in-string" => splice(
            &with_annotation(uid, "note", json!("@@")),
            "@@",
            b"\"caf\xe9 \xff\xfe\"",
        ),
        "utf8-bom" => [&b"\xef\xbb\xbf"[..], &good_bytes[..]].concat(),
        "nul-bytes" => [&b"\0\0"[..], &good_bytes[..]].concat(),
        "deep-arrays" => nested_arrays(100_000),
        "deep-in-pod" | "shallow-in-pod" => {
            let mut review = good.clone();
            review["request"]["object"]["spec"]["containers"][0]["extra"] = json!("@@");
            let depth = if name == "deep-in-pod" { 100_000 } else { 100 };
            splice(&review, "@@", &nested_arrays(depth))
        }
        "five-mib" => serde_json::to_vec(&with_annotation(uid, "pad", json!("x".repeat(5 << 20)))).unwrap(),
        "lone-surrogate" => splice(&with_annotation(uid, "note", json!("@@")), "@@", b"\"\\ud800\""),
        "huge-annotation" => serde_json::to_vec(&with_annotation(uid, "huge", json!("x".repeat(1 << 20)))).unwrap(),
        "huge-proxy-cpu" => serde_json::to_vec(&with_annotation(
            uid,
            "sidecar.istio.io/proxyCPU",
            json!("1".repeat(1 << 20)),
        ))
        .unwrap(),
        other => panic!("no generator {other}"),
    }
}

fn body_of(case: &Case) -> Vec<u8> {
    match (&case.file, &case.patch, &case.generate) {
        (Some(file), None, None) => std::fs::read(format!("{FIXTURES}/bodies/{file}")).unwrap(),
        (None, Some(patch), None) => {
            let mut review = good_review(&case.name);
            json_patch::patch(&mut review, patch).unwrap_or_else(|e| panic!("{}: patch: {e}", case.name));
            serde_json::to_vec(&review).unwrap()
        }
        (None, None, Some(generator)) => generate(generator, &case.name),
        (None, None, None) => serde_json::to_vec(&good_review(&case.name)).unwrap(),
        _ => panic!("{}: give one of file, patch or generate", case.name),
    }
}

/// What a 200 answer says, as one line of text to search.
fn messages(review: &Value) -> String {
    let response = &review["response"];
    let mut text = response["status"]["message"].as_str().unwrap_or_default().to_string();
    for warning in response["warnings"].as_array().into_iter().flatten() {
        text.push('\n');
        text.push_str(warning.as_str().unwrap_or_default());
    }
    text
}

fn shorten(text: &str) -> String {
    let line = text.replace('\n', " | ");
    if line.chars().count() > 150 {
        format!("{}…", line.chars().take(150).collect::<String>())
    } else {
        line
    }
}

/// Counts panics anywhere in the process, server tasks included.
fn count_panics() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let counter = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        counter.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    panics
}

#[tokio::test]
async fn every_bad_input_gets_its_expected_answer() {
    let panics = count_panics();
    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/cases.json")).unwrap()).expect("cases.json");
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let print = std::env::var_os("BAD_INPUT_PRINT").is_some();
    let server = TestServer::start(InjectConfig::default()).await;
    let mut failures = Vec::new();
    for case in &cases {
        let body = body_of(case);
        let sent: Option<Value> = serde_json::from_slice(&body).ok();
        let content_type = match case.content_type.as_deref() {
            None => Some("application/json"),
            Some("") => None,
            Some(other) => Some(other),
        };
        let answer = server.post("/inject", content_type, body).await;
        let mut problems = Vec::new();
        if answer.status != case.status {
            problems.push(format!("status {} (expected {})", answer.status, case.status));
        }
        let text = if answer.status == 200 {
            let review = answer.json();
            let response = &review["response"];
            if let Some(sent) = &sent {
                if response["uid"] != sent["request"]["uid"] {
                    problems.push(format!("uid {} not echoed", sent["request"]["uid"]));
                }
                if review["apiVersion"] != sent["apiVersion"] {
                    problems.push(format!("apiVersion {} not echoed", review["apiVersion"]));
                }
            }
            if case.allowed.is_some_and(|allowed| response["allowed"] != allowed) {
                problems.push(format!("allowed {} (expected {:?})", response["allowed"], case.allowed));
            }
            let patched = response.get("patch").is_some();
            if case.injected.is_some_and(|injected| injected != patched) {
                problems.push(format!("patched {patched} (expected {:?})", case.injected));
            }
            if patched {
                let original = sent
                    .as_ref()
                    .map(|s| s["request"]["object"].clone())
                    .unwrap_or_default();
                let pod = apply_and_check(&original, &review);
                let proxies = common::container(&pod, "istio-proxy").into_iter().count();
                assert_eq!(proxies, 1, "{}: one istio-proxy", case.name);
                assert!(patch_of(&review).is_some());
            }
            format!(
                "allowed={} patched={patched} {}",
                response["allowed"],
                messages(&review)
            )
        } else {
            let text = answer.text();
            if text.lines().count() != 1 {
                problems.push("the error answer is not one line".into());
            }
            text
        };
        if let Some(expected) = &case.message
            && !text.contains(expected.as_str())
        {
            problems.push(format!("message lacks {expected:?}"));
        }
        if print {
            println!("{:<40} {} {}", case.name, answer.status, shorten(&text));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} — got: {}",
                case.name,
                problems.join("; "),
                shorten(&text)
            ));
        }
    }
    // Still serving, and nothing panicked.
    let pod = simple_pod(json!({}));
    apply_and_check(&pod, &server.review(&pod_review("after-all", "apps", &pod)).await);
    assert_eq!(server.admin_get("/livez").await.unwrap().status, 200);
    server.stop().await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(panics.load(Ordering::SeqCst), 0, "something panicked");
    println!("{} bad-input cases answered as expected", cases.len());
}
