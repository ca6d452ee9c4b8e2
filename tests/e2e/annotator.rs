//! A second mutating webhook, to make the API server reinvoke ours.
//!
//! It adds an annotation and a label to every pod it is sent. Registered under a name that
//! sorts after ours, it runs after our webhook; its change makes the API server call ours
//! again (`reinvocationPolicy: IfNeeded`), which must not add a second proxy. It is served
//! on the library's own HTTPS stack (`server::https::serve_https`) with its own rcgen CA,
//! and answers with the library's wire format, so its patch goes out as base64.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::{Value, json};
use sidecar_injector::certs::CertBundle;
use sidecar_injector::review::WireReview;
use sidecar_injector::server::https::serve_https;
use sidecar_injector::server::tls::server_config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::check::Context;
use crate::cluster::string_map;

/// The annotation, and label, the annotator adds.
pub const MARK: &str = "e2e.sidecar-injector.dev/annotated";

/// The running annotator; aborted when dropped.
pub struct Annotator {
    addr: SocketAddr,
    ca_pem: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

// === impl Annotator ===

impl Annotator {
    /// Serves the annotator on a 127.0.0.1 ephemeral port.
    pub async fn start() -> Result<Self, String> {
        let bundle = CertBundle::generate(&["127.0.0.1".to_string()]).context("making annotator certificates")?;
        let tls = server_config(
            bundle.cert_pem.as_bytes(),
            bundle.key_pem.as_bytes(),
            ("generated", "generated"),
        )
        .context("loading annotator certificates")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the annotator")?;
        let addr = listener.local_addr().context("annotator address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new().route("/mutate", post(mutate));
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = serve_https(listener, tls, app, None, shutdown).await {
                eprintln!("annotator stopped: {error}");
            }
        });
        Ok(Annotator {
            addr,
            ca_pem: bundle.ca_pem,
            stop: Some(stop),
            task,
        })
    }

    /// Its registration, named `name`, for pods in namespaces labelled `key=value`.
    pub fn configuration(&self, name: &str, namespace_label: (&str, &str)) -> MutatingWebhookConfiguration {
        let strings = |items: &[&str]| Some(items.iter().map(|s| s.to_string()).collect());
        MutatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            webhooks: Some(vec![MutatingWebhook {
                name: "annotator.e2e.sidecar-injector.dev".into(),
                admission_review_versions: vec!["v1".into()],
                client_config: WebhookClientConfig {
                    url: Some(format!("https://{}/mutate", self.addr)),
                    ca_bundle: Some(ByteString(self.ca_pem.as_bytes().to_vec())),
                    service: None,
                },
                rules: Some(vec![RuleWithOperations {
                    operations: strings(&["CREATE"]),
                    api_groups: strings(&[""]),
                    api_versions: strings(&["v1"]),
                    resources: strings(&["pods"]),
                    scope: None,
                }]),
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(string_map(&[namespace_label])),
                    match_expressions: None,
                }),
                side_effects: "None".into(),
                failure_policy: Some("Fail".into()),
                reinvocation_policy: Some("Never".into()),
                timeout_seconds: Some(10),
                ..MutatingWebhook::default()
            }]),
        }
    }
}

impl Drop for Annotator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn mutate(body: Bytes) -> Response {
    match answer(&body) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error).into_response(),
    }
}

fn answer(body: &[u8]) -> Result<Vec<u8>, String> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).context("reading the review")?;
    let request: AdmissionRequest<DynamicObject> = review.try_into().context("review without request")?;
    let metadata = request.object.as_ref().map(|object| &object.metadata);
    let mut operations = Vec::new();
    for (field, present) in [
        ("annotations", metadata.is_some_and(|m| m.annotations.is_some())),
        ("labels", metadata.is_some_and(|m| m.labels.is_some())),
    ] {
        operations.push(add(field, present));
    }
    let response = AdmissionResponse::from(&request)
        .with_patch(Patch(operations))
        .context("serialising the patch")?;
    Ok(WireReview::new(&request.types.api_version, &response).to_bytes())
}

/// Adds [`MARK`] to `metadata.<field>`, creating the map when the pod has none.
fn add(field: &str, present: bool) -> PatchOperation {
    let (path, value): (PointerBuf, Value) = if present {
        (PointerBuf::from_tokens(["metadata", field, MARK]), json!("true"))
    } else {
        (PointerBuf::from_tokens(["metadata", field]), json!({ MARK: "true" }))
    };
    PatchOperation::Add(AddOperation { path, value })
}
