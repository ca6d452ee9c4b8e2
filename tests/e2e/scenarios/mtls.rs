//! Scenario 15: mTLS from the API server. An injector that requires client certificates (as
//! `serve --client-ca` does) is called by the real API server, which presents the client
//! certificate its AdmissionConfiguration names (see `control_plane.rs`); a client without
//! one, or with one from another CA, gets no HTTP answer.
//!
//! The injector serves an Istio revision of its own, registered as scenario 14's is, so only
//! this scenario's namespace reaches it. A pod created there is stored injected: the API
//! server completed the handshake with its certificate and the call was served, without one
//! handshake failure. Then direct HTTPS POSTs of an AdmissionReview, trusting the injector's
//! CA: with the API server's own certificate it is answered (so the client itself works),
//! without a certificate and with a stranger's it is refused during the handshake, and the
//! injector counts both refusals. The stranger's CA has the same name as the trusted one
//! (both come from `CertBundle`), so only the signature check can tell them apart. The registration is deleted and the injector stopped
//! whatever the outcome.

use std::error::Error;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use sidecar_injector::certs::CertBundle;
use sidecar_injector::server::tls::parse_pem;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::check::{Context, Outcome, ensure, eventually};
use crate::common::pod_review;
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::{HANDSHAKE_FAILURES, REQUESTS, RunningInjector};
use crate::pods::{layout, proxy_count, test_pod};

const CONFIGURATION: &str = "sidecar-injector-e2e-mtls";
/// The revision the mTLS injector serves.
const REVISION: &str = "e2e-mtls";
const NAMESPACE: &str = "e2e-mtls";

pub async fn run(harness: &Harness) -> Outcome {
    let identity = harness.webhook_client().ok_or(
        "needs the test's own kube-apiserver, which it gives a webhook client certificate; \
         an existing cluster's API server presents none",
    )?;
    harness
        .cluster
        .create_namespace(NAMESPACE, &[(REVISION_LABEL, REVISION)])
        .await?;
    let mut config = deploy::injector_config()?;
    config.revision = REVISION.to_string();
    let injector = RunningInjector::start_with_client_ca(config, &identity.ca_pem).await?;
    let configuration = deploy::for_revision(
        deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
        CONFIGURATION,
        REVISION,
    );
    let checked = match harness.cluster.register_webhook(&configuration).await {
        Ok(()) => check(harness, &injector, identity).await,
        Err(error) => Err(error),
    };
    let unregistered = harness.cluster.unregister_webhook(CONFIGURATION).await;
    let stopped = injector.stop().await;
    let checked = checked?;
    unregistered?;
    stopped?;
    Ok(checked)
}

async fn check(harness: &Harness, injector: &RunningInjector, identity: &CertBundle) -> Outcome {
    let injected = injected_through_api_server(harness, injector).await?;
    let refused = refused_without_trusted_certificate(injector, identity).await?;
    Ok(format!("{injected}; {refused}"))
}

/// Waits until the API server calls the injector, then creates a pod and checks it was
/// injected by that call; returns what was seen.
async fn injected_through_api_server(harness: &Harness, injector: &RunningInjector) -> Result<String, String> {
    let pod = test_pod("mtls", &[], &[]);
    harness
        .cluster
        .until_injected("the API server calls the mTLS injector", NAMESPACE, &pod)
        .await?;
    let before = injector.counter(REQUESTS).await?;
    let stored = harness
        .cluster
        .create_pod(NAMESPACE, &pod)
        .await
        .context("creating the pod")?;
    ensure!(
        proxy_count(&stored) == 1,
        "the pod was stored without one proxy: {}",
        layout(&stored)
    );
    let after = injector.counter(REQUESTS).await?;
    ensure!(
        after > before,
        "{REQUESTS} stayed at {before} while the pod was created"
    );
    let failures = injector.counter(HANDSHAKE_FAILURES).await?;
    ensure!(
        failures == 0,
        "{failures} TLS handshakes failed while only the API server called"
    );
    Ok(format!(
        "API server's calls injected the pod ({REQUESTS} {before} -> {after}, no handshake failure)"
    ))
}

/// Direct POSTs: answered with the API server's certificate, refused without one and with
/// one from another CA, and both refusals counted by the injector.
async fn refused_without_trusted_certificate(injector: &RunningInjector, identity: &CertBundle) -> Outcome {
    let uid = "e2e-mtls-direct";
    let accepted = post_review(injector, Some(identity), uid)
        .await
        .context("with the API server's client certificate")?;
    check_allowed(&accepted, uid)?;
    let anonymous = post_review(injector, None, uid).await;
    ensure!(
        anonymous.is_err(),
        "a client without a certificate was answered: {anonymous:?}"
    );
    let stranger = CertBundle::generate(&["stranger".to_string()]).context("making another CA's certificate")?;
    let other_ca = post_review(injector, Some(&stranger), uid).await;
    ensure!(
        other_ca.is_err(),
        "a certificate from another CA was accepted: {other_ca:?}"
    );
    eventually("the injector counts both refused handshakes", || async {
        match injector.counter(HANDSHAKE_FAILURES).await? {
            n if n >= 2 => Ok(()),
            n => Err(format!("{HANDSHAKE_FAILURES} is {n}")),
        }
    })
    .await?;
    let reason = |outcome: Result<(u16, String), String>| outcome.err().unwrap_or_default();
    Ok(format!(
        "direct: client cert answered 200; none refused ({}); other CA refused ({})",
        reason(anonymous),
        reason(other_ca)
    ))
}

/// The injector's answer is a 200 allowing the review `uid`.
fn check_allowed((status, body): &(u16, String), uid: &str) -> Result<(), String> {
    ensure!(*status == 200, "answered {status}: {body}");
    let review: Value = serde_json::from_str(body).context(format!("the answer is not JSON: {body}"))?;
    let response = &review["response"];
    ensure!(
        response["uid"] == uid && response["allowed"] == true,
        "expected an allowed response for {uid}, got {body}"
    );
    Ok(())
}

/// POSTs an AdmissionReview CREATE of a test pod to the injector on a new connection,
/// trusting its CA and presenting `identity`'s certificate if given: the status and body, or
/// why there was no answer.
async fn post_review(
    injector: &RunningInjector,
    identity: Option<&CertBundle>,
    uid: &str,
) -> Result<(u16, String), String> {
    let connector = TlsConnector::from(client_config(injector.ca_pem(), identity)?);
    let addr = injector.webhook_addr();
    let tcp = TcpStream::connect(addr)
        .await
        .context(format!("connecting to {addr}"))?;
    let tls = connector
        .connect(ServerName::from(addr.ip()), tcp)
        .await
        .map_err(|e| format!("TLS handshake: {}", chain(&e)))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {}", chain(&e)))?;
    tokio::spawn(connection);
    let request = hyper::Request::post("/inject")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review(uid)?)))
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("POST /inject: {}", chain(&e)))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {}", chain(&e)))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A TLS client for HTTP/1.1 trusting `server_ca_pem`, with `identity`'s certificate if given.
fn client_config(server_ca_pem: &str, identity: Option<&CertBundle>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots
            .add(cert.context("reading the injector's CA")?)
            .context("trusting the injector's CA")?;
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (certs, key) = parse_pem(
                identity.cert_pem.as_bytes(),
                identity.key_pem.as_bytes(),
                ("client certificate", "client key"),
            )
            .context("reading the client certificate")?;
            builder
                .with_client_auth_cert(certs, key)
                .context("loading the client certificate")?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// An AdmissionReview v1 CREATE of a test pod in this scenario's namespace.
fn review(uid: &str) -> Result<Vec<u8>, String> {
    let pod = serde_json::to_value(test_pod("direct", &[], &[])).context("serializing the pod")?;
    serde_json::to_vec(&pod_review(uid, NAMESPACE, &pod)).context("serializing the review")
}

/// An error and its sources, joined with `: ` (hyper's own message omits the I/O cause).
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
