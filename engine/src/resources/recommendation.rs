//! A sizing recommendation from outside the pod, as plain data: today a
//! VerticalPodAutoscaler's `target` for `istio-proxy`, found by the server for the pod's owner.
//!
//! It is a layer between the pod's annotations and the namespace's (pod annotation >
//! recommendation > namespace default > profile > config default) and sets requests only;
//! bounds, LimitRanges and the QoS rule apply to it as to any other layer.

use crate::fields::{FieldKey, Resource, Side};
use crate::quantity::Quantity;

/// Requests recommended for the proxy, and who recommended them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// Shown as the fields' source, e.g. `vpa shop/web`.
    pub origin: String,
    /// The CPU request, when recommended.
    pub cpu: Option<Quantity>,
    /// The memory request, when recommended.
    pub memory: Option<Quantity>,
}

impl Recommendation {
    /// The recommended value of `key`; limits and ephemeral storage are never recommended.
    pub fn value(&self, key: FieldKey) -> Option<Quantity> {
        match (key.resource, key.side) {
            (Resource::Cpu, Side::Request) => self.cpu,
            (Resource::Memory, Side::Request) => self.memory,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;
    use crate::annotations::{PROXY_CPU, PROXY_MEMORY};
    use crate::config::InjectConfig;
    use crate::resources::{NamespaceContext, resolve_resources};

    fn vpa() -> Recommendation {
        Recommendation {
            origin: "vpa shop/web".into(),
            cpu: Some(Quantity::from_millicores(35)),
            memory: Some(Quantity::from_bytes(300 << 20)),
        }
    }

    fn resolve(pod_annotations: serde_json::Value, namespace: &[(&str, &str)], config: &str) -> String {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"annotations": pod_annotations},
            "spec": {"containers": [{"name": "app", "image": "x"}]}}))
        .unwrap();
        let annotations: BTreeMap<String, String> =
            namespace.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let recommendation = vpa();
        let context = NamespaceContext {
            annotations: Some(&annotations),
            limit_ranges: &[],
            recommendation: Some(&recommendation),
            resource_quotas: &[],
        };
        let tuning = InjectConfig::from_yaml(config, "t").unwrap().compile().unwrap().tuning;
        let amounts = crate::resources::AppAmounts::of(&pod);
        let view = crate::resources::PodView {
            pod: &pod,
            amounts: &amounts,
        };
        resolve_resources(view, &context, &tuning, false)
            .unwrap()
            .resources
            .provenance()
    }

    #[test]
    fn the_recommendation_sits_between_pod_and_namespace_annotations() {
        let provenance: serde_json::Value =
            serde_json::from_str(&resolve(json!({PROXY_MEMORY: "200Mi"}), &[(PROXY_CPU, "500m")], "{}")).unwrap();
        // The namespace's CPU loses to the VPA; the pod's memory beats it; limits stay.
        assert_eq!(
            provenance["cpu.request"],
            json!({"value": "35m", "from": "vpa shop/web"})
        );
        assert_eq!(
            provenance["memory.request"]["from"],
            format!("pod annotation {PROXY_MEMORY}")
        );
        assert_eq!(provenance["cpu.limit"]["from"], "config default");
    }

    #[test]
    fn bounds_still_apply_to_the_recommendation() {
        let config = "bounds:\n  cpu.request: {min: 50m}\n  memory.request: {max: 256Mi}\n";
        let provenance: serde_json::Value = serde_json::from_str(&resolve(json!({}), &[], config)).unwrap();
        assert_eq!(
            provenance["cpu.request"],
            json!({"value": "50m", "from": "vpa shop/web", "adjusted": "raised to 50m (cluster min)"})
        );
        assert_eq!(provenance["memory.request"]["value"], "256Mi");
    }
}
