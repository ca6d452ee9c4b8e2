//! Scenario 14: Pod Security `restricted` admits our injected pod in CNI plus native sidecar
//! mode, and rejects the same pod injected in the classic mode.
//!
//! A second injector runs deploy/config.yaml with `nativeSidecars: true` and
//! `cniEnabled: true` (and the shipped `seccompRuntimeDefault: true`), serving an Istio
//! revision of its own: registered as a canary revision is, with deploy/'s `istio.io/rev`
//! webhooks selecting that revision, so only a namespace labelled with it reaches this
//! injector and the harness's injector never sees it. PodSecurity admission runs after the
//! mutating webhooks, so the real PodSecurity judges the injected pod: `istio-validation` and
//! the native `istio-proxy` (an init container with `restartPolicy: Always`), beside an app
//! container that is itself restricted-compliant. The same pod in a restricted namespace
//! injected by the harness's classic injector gets `istio-init` with NET_ADMIN and NET_RAW,
//! and the rejection names that container only. The second registration is deleted and its
//! injector stopped whatever the outcome.

use k8s_openapi::api::core::v1::{Capabilities, Container, Pod, SeccompProfile, SecurityContext};

use crate::check::{Context, Outcome, ensure};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{INIT, PROXY, VALIDATION, container, layout, test_pod};

const CONFIGURATION: &str = "sidecar-injector-e2e-restricted";
/// The revision the second injector serves.
const REVISION: &str = "e2e-restricted";
const ENFORCE_RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

pub async fn run(harness: &Harness) -> Outcome {
    let namespace = "e2e-restricted-native";
    let classic_namespace = "e2e-restricted-classic";
    harness
        .cluster
        .create_namespace(namespace, &[(REVISION_LABEL, REVISION), ENFORCE_RESTRICTED])
        .await?;
    harness
        .injected_namespace(classic_namespace, &[ENFORCE_RESTRICTED])
        .await?;

    let mut config = deploy::injector_config()?;
    ensure!(
        config.seccomp_runtime_default,
        "deploy/config.yaml turns seccompRuntimeDefault off; restricted needs it"
    );
    config.native_sidecars = true;
    config.cni_enabled = true;
    config.revision = REVISION.to_string();
    let injector = RunningInjector::start(config).await?;
    let configuration = deploy::for_revision(
        deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
        CONFIGURATION,
        REVISION,
    );
    let registered = harness.cluster.register_webhook(&configuration).await;
    let admitted = match registered {
        Ok(()) => admitted_when_native_and_cni(harness, namespace).await,
        Err(error) => Err(error),
    };
    let unregistered = harness.cluster.unregister_webhook(CONFIGURATION).await;
    let stopped = injector.stop().await;
    let admitted = admitted?;
    unregistered?;
    stopped?;

    let message = match harness
        .cluster
        .create_pod(classic_namespace, &restricted_app("classic"))
        .await
    {
        Ok(pod) => return Err(format!("the classic injected pod was admitted: {}", layout(&pod))),
        Err(error) => crate::cluster::api_message(&error),
    };
    for expected in ["violates PodSecurity \"restricted", INIT, "NET_ADMIN", "NET_RAW"] {
        ensure!(message.contains(expected), "expected {expected:?} in: {message}");
    }
    for compliant in [PROXY, "\"app\""] {
        ensure!(
            !message.contains(compliant),
            "the rejection names {compliant}, which should be compliant: {message}"
        );
    }
    Ok(format!(
        "admitted with CNI + native sidecars ({admitted}); classic: {message}"
    ))
}

/// Waits until the API server calls the second injector, then creates the pod; returns its
/// layout.
async fn admitted_when_native_and_cni(harness: &Harness, namespace: &str) -> Result<String, String> {
    let pod = restricted_app("native-cni");
    harness
        .cluster
        .until_injected("the API server calls the revision's injector", namespace, &pod)
        .await?;
    let stored = harness
        .cluster
        .create_pod(namespace, &pod)
        .await
        .context("the injected pod should pass restricted")?;
    let spec = stored.spec.as_ref().ok_or("the stored pod has no spec")?;
    let names = |list: &[Container]| list.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let inits = names(spec.init_containers.as_deref().unwrap_or_default());
    ensure!(
        inits == [VALIDATION, PROXY] && names(&spec.containers) == ["app"],
        "expected init: [{VALIDATION}, {PROXY}] containers: [app], got {}",
        layout(&stored)
    );
    let proxy = container(&stored, PROXY).ok_or("no proxy")?;
    ensure!(
        proxy.restart_policy.as_deref() == Some("Always"),
        "{PROXY} is not a native sidecar: restartPolicy {:?}",
        proxy.restart_policy
    );
    for name in [VALIDATION, PROXY] {
        let found = container(&stored, name).ok_or_else(|| format!("no {name}"))?;
        check_restricted(found)?;
    }
    Ok(layout(&stored))
}

/// What `restricted` asks of each container, set on the container itself so that the
/// injected containers cannot lean on pod-level settings.
fn restricted_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// A pod whose app container passes `restricted` on its own.
fn restricted_app(name: &str) -> Pod {
    let mut pod = test_pod(name, &[], &[]);
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers[0].security_context = Some(restricted_context());
    }
    pod
}

/// The injected container carries every `restricted` setting itself.
fn check_restricted(container: &Container) -> Result<(), String> {
    let context = container.security_context.clone().unwrap_or_default();
    let name = &container.name;
    ensure!(
        context.run_as_non_root == Some(true),
        "{name}: runAsNonRoot is {:?}",
        context.run_as_non_root
    );
    ensure!(
        context.allow_privilege_escalation == Some(false),
        "{name}: allowPrivilegeEscalation is {:?}",
        context.allow_privilege_escalation
    );
    let capabilities = context.capabilities.unwrap_or_default();
    ensure!(
        capabilities.drop == Some(vec!["ALL".to_string()]) && capabilities.add.as_ref().is_none_or(Vec::is_empty),
        "{name}: capabilities {capabilities:?}"
    );
    let seccomp = context.seccomp_profile.map(|p| p.type_);
    ensure!(
        seccomp.as_deref() == Some("RuntimeDefault"),
        "{name}: seccompProfile {seccomp:?}"
    );
    Ok(())
}
