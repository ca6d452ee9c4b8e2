//! `sidecar.istio.io/userVolume` and `userVolumeMount`: extra volumes for the proxy.
//!
//! Each annotation is a JSON object keyed by volume name: `userVolume` maps a name to a
//! Kubernetes volume source, `userVolumeMount` a name to a volume mount. The volumes are
//! added to the pod and the mounts to `istio-proxy`, as istiod does. Before they are, what
//! we would add is checked against the API server's rules ([`crate::volume_rules`]) and
//! against what is already there: a mount must name a volume, and its path must be new in
//! the proxy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use serde_json::{Map, Value};

use super::error::{InjectError, quoted};
use crate::annotations::{USER_VOLUME_FORMS, USER_VOLUME_MOUNT_FORMS};
use crate::volume_rules::{self, Violation};

/// Volumes for the proxy, by name.
pub use crate::annotations::USER_VOLUME;
/// Mounts for the proxy, by volume name.
pub use crate::annotations::USER_VOLUME_MOUNT;

/// The volumes and mounts the annotations ask for, as JSON ready for the patch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserVolumes {
    /// Pod volumes, each with its `name`.
    pub volumes: Vec<Value>,
    /// `istio-proxy` volume mounts, each with its `name`.
    pub mounts: Vec<Value>,
}

/// What the user's volumes and mounts are added beside.
pub(crate) struct Surroundings<'a> {
    /// The names of the pod's own volumes.
    pub pod_volumes: Vec<&'a str>,
    /// The names of the volumes injection adds.
    pub our_volumes: Vec<&'a str>,
    /// The proxy's own mounts, (volume, path).
    pub our_mounts: Vec<(&'a str, &'a str)>,
    /// Whether the proxy runs privileged (a user override can make it so).
    pub privileged: bool,
}

/// Reads and validates both annotations.
pub fn user_volumes(annotations: Option<&BTreeMap<String, String>>) -> Result<UserVolumes, InjectError> {
    Ok(UserVolumes {
        volumes: parse::<Volume>(annotations, USER_VOLUME, USER_VOLUME_FORMS)?,
        mounts: parse::<VolumeMount>(annotations, USER_VOLUME_MOUNT, USER_VOLUME_MOUNT_FORMS)?,
    })
}

// === impl UserVolumes ===

impl UserVolumes {
    /// Whether either annotation asks for anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.mounts.is_empty()
    }

    /// Checks what would be added, as the API server will: each volume the pod and injection
    /// do not already name, and each mount injection does not already make.
    pub(crate) fn check(&self, around: &Surroundings<'_>) -> Result<(), InjectError> {
        let taken = |name: &str| around.pod_volumes.contains(&name) || around.our_volumes.contains(&name);
        let mut user_volume_names = Vec::with_capacity(self.volumes.len());
        for value in &self.volumes {
            let volume: Volume = typed(value, USER_VOLUME, USER_VOLUME_FORMS)?;
            if !taken(&volume.name) {
                volume_rules::check_volume(&volume).map_err(|v| violation(USER_VOLUME, &volume.name, v))?;
            }
            user_volume_names.push(volume.name);
        }
        let mut added_paths: Vec<(String, String)> = Vec::with_capacity(self.mounts.len());
        for value in &self.mounts {
            let mount: VolumeMount = typed(value, USER_VOLUME_MOUNT, USER_VOLUME_MOUNT_FORMS)?;
            let entry = mount.name.as_str();
            let fail = |v: Violation| violation(USER_VOLUME_MOUNT, entry, v);
            if around
                .our_mounts
                .iter()
                .any(|(name, path)| *name == entry || *path == mount.mount_path)
            {
                // Same volume or path as one of ours: the proxy keeps its own mount, unless
                // the path is ours under another volume, which the API server refuses.
                if let Some((name, _)) = around
                    .our_mounts
                    .iter()
                    .find(|(name, path)| *path == mount.mount_path && *name != entry)
                {
                    return Err(fail(duplicate_path(&mount.mount_path, name)));
                }
                continue;
            }
            volume_rules::check_mount(&mount, around.privileged).map_err(fail)?;
            if !taken(entry) && !user_volume_names.iter().any(|name| name == entry) {
                return Err(fail(Violation {
                    field: "name".into(),
                    value: quoted(entry),
                    rule: "names no volume (not one of the pod's volumes, the injected ones or a sidecar.istio.io/userVolume entry)".into(),
                }));
            }
            if let Some((name, _)) = added_paths.iter().find(|(_, path)| *path == mount.mount_path) {
                return Err(fail(duplicate_path(&mount.mount_path, name)));
            }
            added_paths.push((mount.name.clone(), mount.mount_path.clone()));
        }
        Ok(())
    }
}

fn duplicate_path(path: &str, other: &str) -> Violation {
    Violation {
        field: "mountPath".into(),
        value: quoted(path),
        rule: format!(
            "is already a mount path of istio-proxy (volume {}); mount paths must be unique within a container",
            quoted(other)
        ),
    }
}

fn violation(annotation: &'static str, entry: &str, violation: Violation) -> InjectError {
    InjectError::InvalidUserVolume {
        annotation,
        entry: quoted(entry),
        field: violation.field,
        value: violation.value,
        rule: violation.rule,
    }
}

/// A parsed entry as its Kubernetes type (it parsed once already, in [`user_volumes`]).
fn typed<T: serde::de::DeserializeOwned>(
    value: &Value,
    annotation: &'static str,
    accepted: &'static str,
) -> Result<T, InjectError> {
    serde_json::from_value(value.clone()).map_err(|e| InjectError::InvalidAnnotation {
        annotation: annotation.into(),
        value: quoted(&value.to_string()),
        reason: e.to_string(),
        accepted,
    })
}

/// Parses a name-keyed JSON object, checking each entry (with its name) as a `T`.
fn parse<T: serde::de::DeserializeOwned>(
    annotations: Option<&BTreeMap<String, String>>,
    key: &'static str,
    accepted: &'static str,
) -> Result<Vec<Value>, InjectError> {
    let Some(text) = annotations.and_then(|map| map.get(key)) else {
        return Ok(Vec::new());
    };
    let invalid = |reason: String| InjectError::InvalidAnnotation {
        annotation: key.into(),
        value: quoted(text),
        reason,
        accepted,
    };
    let entries: Map<String, Value> = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    entries
        .into_iter()
        .map(|(name, mut value)| {
            let object = value
                .as_object_mut()
                .ok_or_else(|| invalid(format!("entry {} is not an object", quoted(&name))))?;
            object.insert("name".into(), Value::String(name.clone()));
            serde_json::from_value::<T>(value.clone()).map_err(|e| invalid(format!("entry {}: {e}", quoted(&name))))?;
            Ok(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_named_volumes_and_mounts_and_rejects_bad_ones() {
        let annotations = BTreeMap::from([
            (
                USER_VOLUME.to_string(),
                r#"{"certs":{"secret":{"secretName":"tls"}}}"#.to_string(),
            ),
            (
                USER_VOLUME_MOUNT.to_string(),
                r#"{"certs":{"mountPath":"/etc/certs","readOnly":true}}"#.to_string(),
            ),
        ]);
        let parsed = user_volumes(Some(&annotations)).unwrap();
        assert_eq!(parsed.volumes[0]["name"], "certs");
        assert_eq!(parsed.mounts[0]["mountPath"], "/etc/certs");
        for bad in [r#"{"certs": 3}"#, "not json", r#"{"certs":{"mountPath": 5}}"#] {
            let annotations = BTreeMap::from([(USER_VOLUME_MOUNT.to_string(), bad.to_string())]);
            let error = user_volumes(Some(&annotations)).unwrap_err().to_string();
            assert!(error.contains(USER_VOLUME_MOUNT), "{error}");
        }
    }

    fn checked(volumes: &str, mounts: &str) -> Result<(), String> {
        let annotations = BTreeMap::from([
            (USER_VOLUME.to_string(), volumes.to_string()),
            (USER_VOLUME_MOUNT.to_string(), mounts.to_string()),
        ]);
        let around = Surroundings {
            pod_volumes: vec!["data"],
            our_volumes: vec!["istio-envoy"],
            our_mounts: vec![("istio-envoy", "/etc/istio/proxy")],
            privileged: false,
        };
        user_volumes(Some(&annotations))
            .unwrap()
            .check(&around)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn mounts_must_name_a_volume_and_a_new_path() {
        assert_eq!(
            checked(
                r#"{"x":{"emptyDir":{}}}"#,
                r#"{"x":{"mountPath":"/x"},"data":{"mountPath":"/d"}}"#
            ),
            Ok(())
        );
        assert_eq!(
            checked("{}", r#"{"istio-envoy":{"mountPath":"/etc/istio/proxy"}}"#),
            Ok(()),
            "ours again"
        );
        let error = checked("{}", r#"{"nowhere":{"mountPath":"/n"}}"#).unwrap_err();
        assert!(
            error.contains("entry \"nowhere\" has name \"nowhere\", which names no volume"),
            "{error}"
        );
        let error = checked("{}", r#"{"data":{"mountPath":"/etc/istio/proxy"}}"#).unwrap_err();
        assert!(error.contains("volume \"istio-envoy\""), "{error}");
        let error = checked(
            r#"{"x":{"emptyDir":{}}}"#,
            r#"{"x":{"mountPath":"/d"},"data":{"mountPath":"/d"}}"#,
        )
        .unwrap_err();
        assert!(error.contains("has mountPath \"/d\""), "{error}");
    }

    #[test]
    fn volumes_the_pod_already_names_are_not_ours_to_check() {
        assert_eq!(
            checked(r#"{"data":{"secret":{"secretName":"s","defaultMode":4095}}}"#, "{}"),
            Ok(())
        );
        let error = checked(r#"{"other":{"secret":{"secretName":"s","defaultMode":4095}}}"#, "{}").unwrap_err();
        assert!(
            error.contains("secret.defaultMode 4095, which is not a file mode"),
            "{error}"
        );
    }
}
