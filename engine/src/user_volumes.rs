//! `sidecar.istio.io/userVolume` and `userVolumeMount`: extra volumes for the proxy.
//!
//! Each annotation is a JSON object keyed by volume name: `userVolume` maps a name to a
//! Kubernetes volume source, `userVolumeMount` a name to a volume mount. The volumes are
//! added to the pod and the mounts to `istio-proxy`, as istiod does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use serde_json::{Map, Value};

use super::error::{InjectError, quoted};

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

/// Reads and validates both annotations.
pub fn user_volumes(annotations: Option<&BTreeMap<String, String>>) -> Result<UserVolumes, InjectError> {
    Ok(UserVolumes {
        volumes: parse::<Volume>(annotations, USER_VOLUME, crate::annotations::USER_VOLUME_FORMS)?,
        mounts: parse::<VolumeMount>(
            annotations,
            USER_VOLUME_MOUNT,
            crate::annotations::USER_VOLUME_MOUNT_FORMS,
        )?,
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
}
