//! The `resizePolicy` the injected `istio-proxy` gets, from the config and the pod.
//!
//! The API server refuses `RestartContainer` in a pod whose `restartPolicy` is `Never`
//! (`validateResizePolicy` in Kubernetes' core validation), native sidecar or not, so such a
//! pod gets `NotRequired` for both resources; the resize guard ([`crate::resize`]) then
//! refuses the resizes a restart would have made safe. The init container never gets one:
//! the resources of a non-sidecar init container cannot be resized.

use k8s_openapi::api::core::v1::Pod;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::config::{ResizePolicyConfig, ResizeRestart};

/// What the kubelet does to the proxy on an in-place resize of each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyResizePolicy {
    /// On a CPU resize.
    pub cpu: ResizeRestart,
    /// On a memory resize.
    pub memory: ResizeRestart,
}

impl ProxyResizePolicy {
    /// The policy for `pod`; `None` when the config writes none.
    pub fn for_pod(config: &ResizePolicyConfig, pod: &Pod) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        let never = pod.spec.as_ref().and_then(|spec| spec.restart_policy.as_deref()) == Some("Never");
        let allowed = |restart: ResizeRestart| if never { ResizeRestart::NotRequired } else { restart };
        Some(ProxyResizePolicy {
            cpu: allowed(config.cpu),
            memory: allowed(config.memory),
        })
    }

    /// The policy of a stored container, as the kubelet applies it: an absent entry is
    /// `NotRequired`, the API default.
    pub fn of_container(policies: Option<&[k8s_openapi::api::core::v1::ContainerResizePolicy]>) -> Self {
        let find = |name: &str| {
            policies
                .into_iter()
                .flatten()
                .find(|policy| policy.resource_name == name)
                .and_then(|policy| ResizeRestart::parse(&policy.restart_policy))
                .unwrap_or(ResizeRestart::NotRequired)
        };
        ProxyResizePolicy {
            cpu: find("cpu"),
            memory: find("memory"),
        }
    }

    /// The container's `resizePolicy` list.
    pub fn to_json(self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// One entry of a container's `resizePolicy`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResizeEntry {
    resource_name: &'static str,
    restart_policy: &'static str,
}

impl Serialize for ProxyResizePolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [
            ResizeEntry {
                resource_name: "cpu",
                restart_policy: self.cpu.as_str(),
            },
            ResizeEntry {
                resource_name: "memory",
                restart_policy: self.memory.as_str(),
            },
        ]
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(restart_policy: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "spec": {"containers": [{"name": "app"}], "restartPolicy": restart_policy}
        }))
        .unwrap()
    }

    #[test]
    fn default_is_cpu_in_place_and_memory_restart() {
        let policy = ProxyResizePolicy::for_pod(&ResizePolicyConfig::default(), &pod(Some("Always"))).unwrap();
        assert_eq!(policy.cpu, ResizeRestart::NotRequired);
        assert_eq!(policy.memory, ResizeRestart::RestartContainer);
        assert_eq!(
            policy.to_json(),
            json!([
                {"resourceName": "cpu", "restartPolicy": "NotRequired"},
                {"resourceName": "memory", "restartPolicy": "RestartContainer"},
            ])
        );
    }

    #[test]
    fn restart_policy_never_gets_not_required_for_both() {
        let config = ResizePolicyConfig {
            enabled: true,
            cpu: ResizeRestart::RestartContainer,
            memory: ResizeRestart::RestartContainer,
        };
        let policy = ProxyResizePolicy::for_pod(&config, &pod(Some("Never"))).unwrap();
        assert_eq!(policy.cpu, ResizeRestart::NotRequired);
        assert_eq!(policy.memory, ResizeRestart::NotRequired);
        let on_failure = ProxyResizePolicy::for_pod(&config, &pod(Some("OnFailure"))).unwrap();
        assert_eq!(on_failure.memory, ResizeRestart::RestartContainer);
    }

    #[test]
    fn disabled_writes_none() {
        let config = ResizePolicyConfig {
            enabled: false,
            ..ResizePolicyConfig::default()
        };
        assert_eq!(ProxyResizePolicy::for_pod(&config, &pod(None)), None);
    }

    #[test]
    fn the_injected_proxy_carries_the_policy_and_the_init_container_none() {
        use crate::test_support::{container, inject_and_apply};
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "app"}], "restartPolicy": "Always"}
        });
        for native in [false, true] {
            let config = crate::config::InjectConfig {
                native_sidecars: native,
                ..Default::default()
            };
            let (patched, _) = inject_and_apply(config, &pod, Default::default()).unwrap();
            assert_eq!(
                container(&patched, "istio-proxy")["resizePolicy"],
                ProxyResizePolicy::for_pod(&ResizePolicyConfig::default(), &pod_of(&pod))
                    .unwrap()
                    .to_json()
            );
            assert!(container(&patched, "istio-init").get("resizePolicy").is_none());
        }
        let never = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "app"}], "restartPolicy": "Never"}
        });
        let (patched, _) = inject_and_apply(Default::default(), &never, Default::default()).unwrap();
        assert_eq!(
            container(&patched, "istio-proxy")["resizePolicy"][1]["restartPolicy"],
            "NotRequired"
        );
    }

    fn pod_of(value: &Value) -> Pod {
        serde_json::from_value(value.clone()).unwrap()
    }

    #[test]
    fn a_stored_container_without_policy_is_not_required() {
        let policy = ProxyResizePolicy::of_container(None);
        assert_eq!(policy.memory, ResizeRestart::NotRequired);
    }
}
