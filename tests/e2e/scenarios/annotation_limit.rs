//! Scenario 47: the API server's limit on a pod's annotations (256 KiB of keys and values),
//! met to the byte. The injector's own annotations can take a pod that is valid on its own
//! past it; the injector must then refuse the pod itself, naming `metadata.annotations`,
//! and must admit a pod that leaves exactly the room its annotations take.
//!
//! The steps, against the real API server: a pod of exactly the limit and one of a byte
//! more, uninjected, show where the API server draws the line; a dry run through the
//! webhook measures what the injector adds; a pod that leaves exactly that room is stored
//! with annotations totalling the limit; one byte more is denied by the webhook.

use k8s_openapi::api::core::v1::Pod;

use crate::check::{Outcome, ensure};
use crate::cluster::api_message;
use crate::harness::Harness;
use crate::pods::{proxy_count, test_pod};

/// apimachinery's `TotalAnnotationSizeLimitB`.
const LIMIT: usize = 256 * 1024;
const FILLER: &str = "example.com/filler";
const INJECTED: &str = "e2e-annotation-limit";
const PLAIN: &str = "e2e-annotation-limit-plain";
/// The webhook that selects pods in an `istio-injection=enabled` namespace.
const WEBHOOK: &str = "namespace.sidecar-injector.istio.io";

/// A pod whose one annotation makes its keys and values total `total` bytes.
fn pod_totalling(name: &str, total: usize) -> Pod {
    test_pod(name, &[], &[(FILLER, &"x".repeat(total - FILLER.len()))])
}

fn annotation_bytes(pod: &Pod) -> usize {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .map(|(key, value)| key.len() + value.len())
        .sum()
}

pub async fn run(harness: &Harness) -> Outcome {
    let cluster = &harness.cluster;
    cluster.create_namespace(PLAIN, &[]).await?;
    cluster
        .dry_run_pod(PLAIN, &pod_totalling("at-limit", LIMIT))
        .await
        .map_err(|error| {
            format!(
                "a pod of exactly {LIMIT} annotation bytes was refused: {}",
                api_message(&error)
            )
        })?;
    let refused = match cluster
        .dry_run_pod(PLAIN, &pod_totalling("over-limit", LIMIT + 1))
        .await
    {
        Ok(_) => return Err(format!("the API server admitted {} annotation bytes", LIMIT + 1)),
        Err(error) => api_message(&error),
    };
    ensure!(
        refused.contains("metadata.annotations") && refused.contains("Too long"),
        "the API server refused the pod of {} bytes for another reason: {refused}",
        LIMIT + 1
    );

    harness.injected_namespace(INJECTED, &[]).await?;
    let small = pod_totalling("measure", FILLER.len() + 1);
    let measured = cluster
        .dry_run_pod(INJECTED, &small)
        .await
        .map_err(|error| api_message(&error))?;
    ensure!(proxy_count(&measured) == 1, "the measuring pod was not injected");
    let added = annotation_bytes(&measured) - annotation_bytes(&small);

    let exact = pod_totalling("exact", LIMIT - added);
    let stored = cluster
        .create_pod(INJECTED, &exact)
        .await
        .map_err(|error| format!("the pod leaving {added} bytes was refused: {}", api_message(&error)))?;
    ensure!(
        proxy_count(&stored) == 1,
        "the pod leaving exactly the room was not injected"
    );
    ensure!(
        annotation_bytes(&stored) == LIMIT,
        "stored annotations total {} bytes, expected {LIMIT}",
        annotation_bytes(&stored)
    );

    let message = match cluster
        .create_pod(INJECTED, &pod_totalling("over", LIMIT - added + 1))
        .await
    {
        Ok(_) => return Err("a pod one byte over the room was admitted".into()),
        Err(error) => api_message(&error),
    };
    let ours = format!("admission webhook \"{WEBHOOK}\" denied the request: metadata.annotations:");
    ensure!(message.contains(&ours), "expected {ours:?} in: {message}");
    ensure!(
        message.contains(&format!("would total {} bytes", LIMIT + 1))
            && message.contains(&format!("{added} bytes the injector sets")),
        "the denial does not give the figures: {message}"
    );
    ensure!(
        cluster.get_pod(INJECTED, "over").await?.is_none(),
        "the denied pod was stored"
    );
    Ok(format!(
        "API server: {LIMIT} bytes admitted, {} refused; the injector adds {added} bytes; {} stored at the limit, one more denied by us",
        LIMIT + 1,
        LIMIT - added
    ))
}
