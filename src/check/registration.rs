//! The webhook registration as the API server will use it: each webhook's settings, whether
//! the injector's own namespace (and kube-system) can be sent to it, whether the caBundle
//! verifies the certificate its endpoint presents, and whether the injector says it is ready.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::selectors::{namespace_labels, selects};
use super::tls_probe::{get_plain_http, verify_serving_certificate};
use super::{CheckOptions, ClusterView, Status};

/// The longest `timeoutSeconds` called sensible: with `failurePolicy: Fail` a slow injector
/// holds every pod creation this long (Istio ships 10).
const MAX_SENSIBLE_TIMEOUT_SECONDS: i32 = 15;
/// The shortest: an answer under load can take a second or two.
const MIN_SENSIBLE_TIMEOUT_SECONDS: i32 = 2;
/// The admin port when the pod spec names none.
const DEFAULT_ADMIN_PORT: i32 = 9090;

/// One thing checked about the registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `configuration/webhook`, or `injector` for `/readyz`.
    pub subject: String,
    /// What was checked, e.g. `caBundle`, `failurePolicy`, `namespaceSelector`, `readyz`.
    pub check: &'static str,
    /// How it stands.
    pub status: Status,
    /// What was found, and what is expected when it is not right.
    pub message: String,
}

/// Where a webhook is called: the address to dial and the TLS name to check.
fn endpoint(client_config: &WebhookClientConfig, connect: Option<&str>) -> Result<(String, String), String> {
    if let Some(url) = &client_config.url {
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|error| format!("url {url:?} is not a URL: {error}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("url {url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let address = connect.map_or_else(|| format!("{host}:{port}"), str::to_string);
        return Ok((address, host));
    }
    let service = client_config
        .service
        .as_ref()
        .ok_or("clientConfig names neither a url nor a service")?;
    let name = format!("{}.{}.svc", service.name, service.namespace);
    let address = connect.map_or_else(|| format!("{name}:{}", service.port.unwrap_or(443)), str::to_string);
    Ok((address, name))
}

/// The settings findings of one webhook (no I/O).
pub(crate) fn settings_findings(subject: &str, webhook: &MutatingWebhook) -> Vec<Finding> {
    let finding = |check, status, message: String| Finding {
        subject: subject.to_string(),
        check,
        status,
        message,
    };
    let mut findings = Vec::new();
    let covers_pod_create = webhook.rules.iter().flatten().any(|rule| {
        let has =
            |list: &Option<Vec<String>>, wanted: &str| list.iter().flatten().any(|item| item == wanted || item == "*");
        has(&rule.operations, "CREATE") && has(&rule.api_groups, "") && has(&rule.resources, "pods")
    });
    findings.push(if covers_pod_create {
        finding("rules", Status::Ok, "CREATE of core pods is sent".into())
    } else {
        finding(
            "rules",
            Status::Error,
            "no rule sends CREATE of pods (apiGroups [\"\"], resources [pods]): nothing is injected".into(),
        )
    });
    let failure_policy = webhook.failure_policy.as_deref().unwrap_or("Fail");
    findings.push(match failure_policy {
        "Fail" => finding(
            "failurePolicy",
            Status::Ok,
            "Fail: no pod starts without its proxy".into(),
        ),
        other => finding(
            "failurePolicy",
            Status::Warn,
            format!("{other}: while the injector is down pods start without a proxy (expected Fail)"),
        ),
    });
    let reinvocation = webhook.reinvocation_policy.as_deref().unwrap_or("Never");
    findings.push(match reinvocation {
        "IfNeeded" => finding("reinvocationPolicy", Status::Ok, "IfNeeded".into()),
        other => finding(
            "reinvocationPolicy",
            Status::Warn,
            format!("{other}: a webhook running after ours that adds a container leaves it out of the mesh (expected IfNeeded)"),
        ),
    });
    findings.push(match webhook.side_effects.as_str() {
        "None" | "NoneOnDryRun" => finding("sideEffects", Status::Ok, webhook.side_effects.clone()),
        other => finding(
            "sideEffects",
            Status::Error,
            format!("{other}: the API server refuses dry-run requests to it (expected None)"),
        ),
    });
    let timeout = webhook.timeout_seconds.unwrap_or(10);
    findings.push(
        if (MIN_SENSIBLE_TIMEOUT_SECONDS..=MAX_SENSIBLE_TIMEOUT_SECONDS).contains(&timeout) {
            finding("timeoutSeconds", Status::Ok, format!("{timeout}s"))
        } else {
            finding(
                "timeoutSeconds",
                Status::Warn,
                format!(
                    "{timeout}s: expected {MIN_SENSIBLE_TIMEOUT_SECONDS} to {MAX_SENSIBLE_TIMEOUT_SECONDS} seconds (Istio ships 10)"
                ),
            )
        },
    );
    findings.push(if webhook.admission_review_versions.iter().any(|v| v == "v1") {
        finding("admissionReviewVersions", Status::Ok, "v1".into())
    } else {
        finding(
            "admissionReviewVersions",
            Status::Error,
            format!(
                "{:?}: the injector answers admission.k8s.io/v1 only (expected [v1])",
                webhook.admission_review_versions
            ),
        )
    });
    findings
}

/// Whether the webhook's namespace selector sends it pods of `namespace` (own or system).
pub(crate) fn exclusion_finding(subject: &str, webhook: &MutatingWebhook, namespace: &Namespace, own: bool) -> Finding {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let labels = namespace_labels(&name, namespace.metadata.labels.as_ref());
    let (check, what) = if own {
        ("ownNamespaceExcluded", "the injector's own namespace")
    } else {
        ("systemNamespaceExcluded", "the system namespace")
    };
    let (status, message) = match selects(webhook.namespace_selector.as_ref(), &labels) {
        Ok(false) => (Status::Ok, format!("{what} {name} is not selected")),
        Ok(true) if own => (
            Status::Error,
            format!(
                "{what} {name} is selected: with failurePolicy Fail the injector cannot start while it is down \
                 (expected kubernetes.io/metadata.name NotIn [{name}] in namespaceSelector)"
            ),
        ),
        Ok(true) => (
            Status::Warn,
            format!("{what} {name} is selected (expected kubernetes.io/metadata.name NotIn [{name}])"),
        ),
        Err(error) => (Status::Error, format!("namespaceSelector does not compile: {error}")),
    };
    Finding {
        subject: subject.to_string(),
        check,
        status,
        message,
    }
}

/// Checks every webhook of every configuration, each distinct endpoint once, and `/readyz`.
pub(crate) async fn check_registration(
    client: &kube::Client,
    view: &ClusterView,
    options: &CheckOptions,
) -> Vec<Finding> {
    let services: Vec<(String, String)> = view
        .configurations
        .iter()
        .flat_map(|configuration| configuration.webhooks.iter().flatten())
        .filter_map(|webhook| webhook.client_config.service.as_ref())
        .map(|service| (service.namespace.clone(), service.name.clone()))
        .collect();
    let own_namespace = services.first().map_or_else(
        || options.injector_namespace.clone(),
        |(namespace, _)| namespace.clone(),
    );
    let namespaces = Api::<Namespace>::all(client.clone());
    let mut guarded = Vec::new();
    let mut findings = Vec::new();
    for (name, own) in [(own_namespace.as_str(), true), ("kube-system", false)] {
        match namespaces.get_opt(name).await {
            Ok(Some(namespace)) => guarded.push((namespace, own)),
            Ok(None) if own => findings.push(Finding {
                subject: "injector".into(),
                check: "ownNamespaceExcluded",
                status: Status::Warn,
                message: format!("the injector's namespace {name} does not exist (pass --injector-namespace)"),
            }),
            Ok(None) => {}
            Err(error) => findings.push(Finding {
                subject: "injector".into(),
                check: "ownNamespaceExcluded",
                status: Status::Warn,
                message: format!("cannot read namespace {name}: {error}"),
            }),
        }
    }
    let mut probed: BTreeMap<(String, String, Vec<u8>), Result<String, String>> = BTreeMap::new();
    for configuration in &view.configurations {
        let configuration_name = configuration.metadata.name.clone().unwrap_or_default();
        for webhook in configuration.webhooks.iter().flatten() {
            let subject = format!("{configuration_name}/{}", webhook.name);
            findings.extend(settings_findings(&subject, webhook));
            for (namespace, own) in &guarded {
                findings.push(exclusion_finding(&subject, webhook, namespace, *own));
            }
            let verified = match (
                endpoint(&webhook.client_config, options.connect.as_deref()),
                &webhook.client_config.ca_bundle,
            ) {
                (Err(error), _) => Err(error),
                (Ok(_), None) => Err("clientConfig has no caBundle: the API server cannot trust the injector".into()),
                (Ok((address, server_name)), Some(ca)) => {
                    let key = (address, server_name, ca.0.clone());
                    if !probed.contains_key(&key) {
                        let result = verify_serving_certificate(&key.0, &key.1, &key.2).await;
                        probed.insert(key.clone(), result);
                    }
                    probed[&key].clone()
                }
            };
            let (status, message) = match verified {
                Ok(message) => (Status::Ok, message),
                Err(message) => (Status::Error, message),
            };
            findings.push(Finding {
                subject,
                check: "caBundle",
                status,
                message,
            });
        }
    }
    findings.push(readyz_finding(client, options, &services).await);
    findings
}

/// `/readyz`: the URL given, else through the API server's pod proxy to each pod behind the
/// registration's Service.
async fn readyz_finding(client: &kube::Client, options: &CheckOptions, services: &[(String, String)]) -> Finding {
    let finding = |status, message| Finding {
        subject: "injector".into(),
        check: "readyz",
        status,
        message,
    };
    if let Some(url) = &options.readyz {
        return match get_plain_http(url).await {
            Ok((200, body)) => finding(Status::Ok, format!("{url} answered 200 {body}")),
            Ok((status, body)) => finding(Status::Error, format!("{url} answered {status} {body}")),
            Err(error) => finding(Status::Error, error),
        };
    }
    let Some((namespace, name)) = services.first() else {
        return finding(
            Status::Warn,
            "not checked: the registration calls a url, not a Service; pass --readyz http://HOST:9090/readyz".into(),
        );
    };
    match ready_pods(client, namespace, name).await {
        Ok((ready, total)) if ready > 0 => finding(
            Status::Ok,
            format!("{ready} of {total} pods behind Service {namespace}/{name} answer /readyz 200"),
        ),
        Ok((_, total)) => finding(
            Status::Error,
            format!("none of the {total} pods behind Service {namespace}/{name} answers /readyz 200"),
        ),
        Err(error) => finding(Status::Error, error),
    }
}

/// How many of the Service's pods answer `/readyz` 200 through the API server's pod proxy.
async fn ready_pods(client: &kube::Client, namespace: &str, name: &str) -> Result<(usize, usize), String> {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|error| format!("cannot read Service {namespace}/{name}: {error}"))?;
    let selector = service
        .spec
        .and_then(|spec| spec.selector)
        .filter(|selector| !selector.is_empty())
        .ok_or_else(|| format!("Service {namespace}/{name} has no selector"))?;
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&labels.join(",")))
        .await
        .map_err(|error| format!("cannot list the pods of Service {namespace}/{name}: {error}"))?
        .items;
    let mut ready = 0;
    for pod in &pods {
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let port = pod
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .flat_map(|container| container.ports.iter().flatten())
            .find(|port| port.name.as_deref() == Some("admin"))
            .map_or(DEFAULT_ADMIN_PORT, |port| port.container_port);
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod_name}:{port}/proxy/readyz");
        let Ok(request) = axum::http::Request::get(path).body(Vec::new()) else {
            continue;
        };
        if client.request_text(request).await.is_ok() {
            ready += 1;
        }
    }
    Ok((ready, pods.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_webhook() -> MutatingWebhook {
        let text = include_str!("../../deploy/webhook/mutatingwebhookconfiguration.yaml");
        let document = crate::manifest::read_documents(text).unwrap().remove(0);
        let configuration: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
            serde_json::from_value(document).unwrap();
        configuration.webhooks.unwrap().remove(0)
    }

    #[test]
    fn the_shipped_webhook_is_sensible_and_a_careless_one_is_not() {
        let shipped = shipped_webhook();
        let findings = settings_findings("c/w", &shipped);
        assert!(findings.iter().all(|f| f.status == Status::Ok), "{findings:#?}");
        let own: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "sidecar-injector",
            "labels": {"istio.io/rev": "default"}}}))
        .unwrap();
        assert_eq!(exclusion_finding("c/w", &shipped, &own, true).status, Status::Ok);

        let mut careless = shipped.clone();
        careless.failure_policy = Some("Ignore".into());
        careless.reinvocation_policy = None;
        careless.side_effects = "Some".into();
        careless.timeout_seconds = Some(30);
        careless.namespace_selector = None;
        let statuses: Vec<(&str, Status)> = settings_findings("c/w", &careless)
            .iter()
            .map(|f| (f.check, f.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("rules", Status::Ok),
                ("failurePolicy", Status::Warn),
                ("reinvocationPolicy", Status::Warn),
                ("sideEffects", Status::Error),
                ("timeoutSeconds", Status::Warn),
                ("admissionReviewVersions", Status::Ok),
            ]
        );
        let selected = exclusion_finding("c/w", &careless, &own, true);
        assert_eq!(selected.status, Status::Error);
        assert!(
            selected.message.contains("NotIn [sidecar-injector]"),
            "{}",
            selected.message
        );
    }

    #[test]
    fn endpoints_are_the_url_host_or_the_service_name() {
        let url = WebhookClientConfig {
            url: Some("https://127.0.0.1:8443/inject".into()),
            ..Default::default()
        };
        assert_eq!(
            endpoint(&url, None).unwrap(),
            ("127.0.0.1:8443".to_string(), "127.0.0.1".to_string())
        );
        let service = shipped_webhook().client_config;
        assert_eq!(
            endpoint(&service, None).unwrap(),
            (
                "sidecar-injector.sidecar-injector.svc:443".to_string(),
                "sidecar-injector.sidecar-injector.svc".to_string()
            )
        );
        assert_eq!(endpoint(&service, Some("127.0.0.1:9443")).unwrap().0, "127.0.0.1:9443");
    }
}
