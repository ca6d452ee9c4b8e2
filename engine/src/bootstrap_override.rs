//! `sidecar.istio.io/bootstrapOverride`: a ConfigMap holding Envoy's custom bootstrap.
//!
//! As istiod's sidecar template does, a pod naming one gets the volume
//! `custom-bootstrap-volume` (that ConfigMap, after `workload-certs` among our volumes), its
//! mount at `/etc/istio/custom-bootstrap` in `istio-proxy` (after `istio-data`), and
//! `ISTIO_BOOTSTRAP_OVERRIDE` pointing the agent at `custom_bootstrap.json` in it (after
//! `ISTIO_META_OWNER`). The name must be one a ConfigMap can have: the API server refuses an
//! empty one, and any other name that is not a DNS-1123 subdomain can never be mounted.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::annotations::{BOOTSTRAP_OVERRIDE, BOOTSTRAP_OVERRIDE_FORMS};
use crate::error::{InjectError, quoted};
use crate::volume_rules::is_dns_label;

/// The volume's name.
pub(crate) const VOLUME: &str = "custom-bootstrap-volume";
/// Where `istio-proxy` mounts it.
pub(crate) const MOUNT_PATH: &str = "/etc/istio/custom-bootstrap";
/// The variable naming the bootstrap file to the agent.
pub(crate) const ENV: &str = "ISTIO_BOOTSTRAP_OVERRIDE";
/// Its value.
pub(crate) const FILE: &str = "/etc/istio/custom-bootstrap/custom_bootstrap.json";
/// The volume it follows among ours, and the mount it follows in `istio-proxy`.
pub(crate) const AFTER_VOLUME: &str = "workload-certs";
/// The mount it follows.
pub(crate) const AFTER_MOUNT: &str = "istio-data";

/// The ConfigMap the pod names, checked.
pub(crate) fn read(annotations: Option<&BTreeMap<String, String>>) -> Result<Option<&str>, InjectError> {
    let Some(name) = annotations.and_then(|map| map.get(BOOTSTRAP_OVERRIDE)) else {
        return Ok(None);
    };
    let subdomain = name.len() <= 253 && !name.is_empty() && name.split('.').all(is_dns_label);
    if !subdomain {
        return Err(InjectError::InvalidAnnotation {
            annotation: BOOTSTRAP_OVERRIDE.into(),
            value: quoted(name),
            reason: "it is not a ConfigMap name (a DNS-1123 subdomain: at most 253 characters, \
                     lowercase labels of a-z, 0-9 and '-' joined by dots); the API server refuses an \
                     empty one, and no ConfigMap can have another"
                .into(),
            accepted: BOOTSTRAP_OVERRIDE_FORMS,
        });
    }
    Ok(Some(name))
}

/// The volume for ConfigMap `name`.
pub(crate) fn volume(name: &str) -> Value {
    json!({"name": VOLUME, "configMap": {"name": name}})
}

/// The proxy's mount of it.
pub(crate) fn mount() -> Value {
    json!({"mountPath": MOUNT_PATH, "name": VOLUME})
}

/// For a pod naming a ConfigMap (`name`), where its mount goes among a template's mounts
/// (at `after`, the index of [`AFTER_MOUNT`]'s, found when the template was compiled), with
/// the mount.
pub(crate) fn inserted_mount(name: Option<&str>, after: Option<usize>) -> Option<(usize, Value)> {
    name?;
    Some((after?, mount()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(value: &str) -> Result<Option<String>, String> {
        let annotations = BTreeMap::from([(BOOTSTRAP_OVERRIDE.to_string(), value.to_string())]);
        read(Some(&annotations))
            .map(|n| n.map(str::to_string))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_config_map_name_is_read_and_anything_else_refused() {
        assert_eq!(of("custom-bootstrap"), Ok(Some("custom-bootstrap".into())));
        assert_eq!(of("team.bootstrap-v2"), Ok(Some("team.bootstrap-v2".into())));
        for bad in ["", " leading", "Upper", "a b", "-dash", &"x".repeat(254)] {
            let error = of(bad).unwrap_err();
            assert!(error.contains("it is not a ConfigMap name"), "{bad:?}: {error}");
        }
        assert_eq!(read(None), Ok(None));
    }

    #[test]
    fn the_volume_mount_and_variable_stand_where_istiods_template_puts_them() {
        use crate::config::InjectConfig;
        use crate::test_support::{container, inject_and_apply};
        let pod = json!({"metadata": {"name": "p", "annotations": {BOOTSTRAP_OVERRIDE: "custom-bootstrap"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]}});
        let (patched, _) = inject_and_apply(InjectConfig::default(), &pod, Default::default()).unwrap();
        let names = |list: &Value| -> Vec<String> {
            list.as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect()
        };
        let volumes = names(&patched["spec"]["volumes"]);
        let at = volumes.iter().position(|n| n == VOLUME).expect("the volume is added");
        assert_eq!(volumes[at - 1], AFTER_VOLUME);
        assert_eq!(patched["spec"]["volumes"][at]["configMap"]["name"], "custom-bootstrap");
        let proxy = container(&patched, "istio-proxy");
        let mounts = proxy["volumeMounts"].as_array().unwrap();
        let at = mounts
            .iter()
            .position(|m| m["name"] == VOLUME)
            .expect("the proxy mounts it");
        assert_eq!(mounts[at - 1]["name"], AFTER_MOUNT);
        assert_eq!(mounts[at]["mountPath"], MOUNT_PATH);
        assert!(
            proxy["env"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == ENV && e["value"] == FILE)
        );
        let status: Value = serde_json::from_str(
            patched["metadata"]["annotations"]["sidecar.istio.io/status"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let listed = names(&json!(
            status["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| json!({"name": n}))
                .collect::<Vec<_>>()
        ));
        assert_eq!(
            listed[listed.iter().position(|n| n == VOLUME).unwrap() - 1],
            AFTER_VOLUME
        );
        // Without the annotation, none of it.
        let plain = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app"}]}});
        let (patched, _) = inject_and_apply(InjectConfig::default(), &plain, Default::default()).unwrap();
        assert!(!patched.to_string().contains(VOLUME));
    }
}
