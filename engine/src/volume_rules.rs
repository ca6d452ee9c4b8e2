//! The API server's rules for one volume or volume mount, as
//! `k8s.io/kubernetes/pkg/apis/core/validation` (v1.34) applies them, so a volume or mount we
//! add from `sidecar.istio.io/userVolume`/`userVolumeMount` is one the API server accepts.
//!
//! Covered: volume names, one source per volume, the file modes and item paths of `secret`,
//! `configMap`, `downwardAPI` and `projected` sources, the names these sources require, and
//! `hostPath` paths; a mount's path, `subPath`/`subPathExpr`, `mountPropagation` and
//! `recursiveReadOnly`. The fields of other volume sources are left to the API server (they
//! are checked there and the denial then names the field).

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, ProjectedVolumeSource, Volume, VolumeMount};
use serde_json::Value;

/// The most a volume name may be, as for every DNS-1123 label.
const MAX_LABEL_CHARS: usize = 63;
/// The largest file mode (octal 0777).
const MAX_FILE_MODE: i32 = 0o777;
/// The shortest and longest lifetime of a projected service-account token, in seconds.
const TOKEN_SECONDS: std::ops::RangeInclusive<i64> = 600..=(1 << 32);

/// The rule a value breaks: the field (relative to the volume or mount), the value and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// e.g. `secret.items[0].path`.
    pub field: String,
    /// The value, quoted.
    pub value: String,
    /// What the API server requires, e.g. `is not a relative path`.
    pub rule: String,
}

impl Violation {
    fn new(field: impl Into<String>, value: impl std::fmt::Debug, rule: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            value: format!("{value:?}"),
            rule: rule.into(),
        }
    }
}

type Checked = Result<(), Violation>;

/// Whether `name` is a DNS-1123 label: 1 to 63 of `a-z`, `0-9` and `-`, a letter or digit at
/// each end.
pub(crate) fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL_CHARS
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
}

/// Checks one volume (with its name) as `ValidateVolumes` does.
pub(crate) fn check_volume(volume: &Volume) -> Checked {
    if !is_dns_label(&volume.name) {
        return Err(Violation::new(
            "name",
            &volume.name,
            "is not a lowercase RFC 1123 label (1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)",
        ));
    }
    let sources = source_names(volume);
    if sources.len() > 1 {
        return Err(Violation::new(
            "volume sources",
            sources.join(", "),
            "names more than one; a volume has exactly one source",
        ));
    }
    if let Some(secret) = &volume.secret {
        if secret.secret_name.as_deref().unwrap_or_default().is_empty() {
            return Err(required("secret.secretName"));
        }
        check_mode("secret.defaultMode", secret.default_mode)?;
        check_key_paths("secret.items", secret.items.as_deref())?;
    }
    if let Some(config_map) = &volume.config_map {
        if config_map.name.is_empty() {
            return Err(required("configMap.name"));
        }
        check_mode("configMap.defaultMode", config_map.default_mode)?;
        check_key_paths("configMap.items", config_map.items.as_deref())?;
    }
    if let Some(downward) = &volume.downward_api {
        check_mode("downwardAPI.defaultMode", downward.default_mode)?;
        check_downward_files("downwardAPI.items", downward.items.as_deref())?;
    }
    if let Some(projected) = &volume.projected {
        check_projected(projected)?;
    }
    if let Some(host_path) = &volume.host_path {
        if host_path.path.is_empty() {
            return Err(required("hostPath.path"));
        }
        check_no_backsteps("hostPath.path", &host_path.path)?;
    }
    if let Some(claim) = &volume.persistent_volume_claim
        && claim.claim_name.is_empty()
    {
        return Err(required("persistentVolumeClaim.claimName"));
    }
    Ok(())
}

/// Checks one mount's own fields as `ValidateVolumeMounts` does; `privileged` is whether the
/// container runs privileged (needed for `Bidirectional` propagation).
pub(crate) fn check_mount(mount: &VolumeMount, privileged: bool) -> Checked {
    if mount.mount_path.is_empty() {
        return Err(required("mountPath"));
    }
    let sub_path = mount.sub_path.as_deref().unwrap_or_default();
    let sub_path_expr = mount.sub_path_expr.as_deref().unwrap_or_default();
    if !sub_path.is_empty() {
        check_descending("subPath", sub_path)?;
    }
    if !sub_path_expr.is_empty() {
        if !sub_path.is_empty() {
            return Err(Violation::new(
                "subPathExpr",
                sub_path_expr,
                "is set with subPath; they are mutually exclusive",
            ));
        }
        check_descending("subPathExpr", sub_path_expr)?;
    }
    let propagation = mount.mount_propagation.as_deref();
    match propagation {
        None | Some("None" | "HostToContainer") => {}
        Some("Bidirectional") if privileged => {}
        Some("Bidirectional") => {
            return Err(Violation::new(
                "mountPropagation",
                "Bidirectional",
                "is available only to privileged containers, and istio-proxy is not privileged",
            ));
        }
        Some(other) => {
            return Err(Violation::new(
                "mountPropagation",
                other,
                "is not one of None, HostToContainer, Bidirectional",
            ));
        }
    }
    match mount.recursive_read_only.as_deref() {
        None | Some("Disabled") => Ok(()),
        Some(value @ ("Enabled" | "IfPossible")) => {
            if !mount.read_only.unwrap_or(false) {
                Err(Violation::new(
                    "recursiveReadOnly",
                    value,
                    "may only be set when readOnly is true",
                ))
            } else if propagation.is_some_and(|p| p != "None") {
                Err(Violation::new(
                    "recursiveReadOnly",
                    value,
                    "may only be set when mountPropagation is None or not set",
                ))
            } else {
                Ok(())
            }
        }
        Some(other) => Err(Violation::new(
            "recursiveReadOnly",
            other,
            "is not one of Disabled, Enabled, IfPossible",
        )),
    }
}

/// The volume's sources by their JSON names (the typed volume, so unknown keys do not count).
fn source_names(volume: &Volume) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::to_value(volume) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter(|(key, value)| key != "name" && !value.is_null())
        .map(|(key, _)| key)
        .collect()
}

fn required(field: &str) -> Violation {
    Violation::new(field, "", "is required and empty")
}

fn check_mode(field: &str, mode: Option<i32>) -> Checked {
    match mode {
        Some(mode) if !(0..=MAX_FILE_MODE).contains(&mode) => Err(Violation {
            field: field.into(),
            value: mode.to_string(),
            rule: "is not a file mode from 0 to 0777 (octal; 511 in decimal)".into(),
        }),
        _ => Ok(()),
    }
}

fn check_key_paths(field: &str, items: Option<&[KeyToPath]>) -> Checked {
    for (index, item) in items.unwrap_or_default().iter().enumerate() {
        let at = format!("{field}[{index}]");
        if item.key.is_empty() {
            return Err(required(&format!("{at}.key")));
        }
        check_item_path(&format!("{at}.path"), &item.path)?;
        check_mode(&format!("{at}.mode"), item.mode)?;
    }
    Ok(())
}

fn check_downward_files(field: &str, items: Option<&[DownwardAPIVolumeFile]>) -> Checked {
    for (index, item) in items.unwrap_or_default().iter().enumerate() {
        let at = format!("{field}[{index}]");
        check_item_path(&format!("{at}.path"), &item.path)?;
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(_), Some(_)) => {
                return Err(Violation::new(
                    at,
                    "fieldRef and resourceFieldRef",
                    "sets both; set exactly one",
                ));
            }
            (None, None) => {
                return Err(Violation::new(
                    at,
                    "neither",
                    "sets no fieldRef or resourceFieldRef; set exactly one",
                ));
            }
            _ => {}
        }
        check_mode(&format!("{at}.mode"), item.mode)?;
    }
    Ok(())
}

fn check_projected(projected: &ProjectedVolumeSource) -> Checked {
    check_mode("projected.defaultMode", projected.default_mode)?;
    let mut paths: Vec<&str> = Vec::new();
    for (index, source) in projected.sources.as_deref().unwrap_or_default().iter().enumerate() {
        let at = format!("projected.sources[{index}]");
        let kinds = [
            source.secret.is_some(),
            source.config_map.is_some(),
            source.downward_api.is_some(),
            source.service_account_token.is_some(),
            source.cluster_trust_bundle.is_some(),
            source.pod_certificate.is_some(),
        ];
        if kinds.iter().filter(|set| **set).count() > 1 {
            return Err(Violation::new(
                at,
                "several",
                "names more than one source; each projection has one",
            ));
        }
        if let Some(secret) = &source.secret {
            if secret.name.is_empty() {
                return Err(required(&format!("{at}.secret.name")));
            }
            check_key_paths(&format!("{at}.secret.items"), secret.items.as_deref())?;
            paths.extend(secret.items.iter().flatten().map(|item| item.path.as_str()));
        }
        if let Some(config_map) = &source.config_map {
            if config_map.name.is_empty() {
                return Err(required(&format!("{at}.configMap.name")));
            }
            check_key_paths(&format!("{at}.configMap.items"), config_map.items.as_deref())?;
            paths.extend(config_map.items.iter().flatten().map(|item| item.path.as_str()));
        }
        if let Some(downward) = &source.downward_api {
            check_downward_files(&format!("{at}.downwardAPI.items"), downward.items.as_deref())?;
            paths.extend(downward.items.iter().flatten().map(|item| item.path.as_str()));
        }
        if let Some(token) = &source.service_account_token {
            if let Some(seconds) = token.expiration_seconds
                && !TOKEN_SECONDS.contains(&seconds)
            {
                return Err(Violation {
                    field: format!("{at}.serviceAccountToken.expirationSeconds"),
                    value: seconds.to_string(),
                    rule: "is not from 600 (10 minutes) to 2^32 seconds".into(),
                });
            }
            check_item_path(&format!("{at}.serviceAccountToken.path"), &token.path)?;
        }
    }
    check_unique_paths(&paths)
}

/// An item's path: required, relative, no `..` element, not starting with `..`
/// (`ValidateLocalNonReservedPath`).
fn check_item_path(field: &str, path: &str) -> Checked {
    if path.is_empty() {
        return Err(required(field));
    }
    check_descending(field, path)?;
    if path.starts_with("..") {
        return Err(Violation::new(field, path, "starts with '..'; it must not"));
    }
    Ok(())
}

/// A path below the volume: relative, with no `..` element (`validateLocalDescendingPath`).
fn check_descending(field: &str, path: &str) -> Checked {
    if path.starts_with('/') {
        return Err(Violation::new(field, path, "is not a relative path"));
    }
    check_no_backsteps(field, path)
}

fn check_no_backsteps(field: &str, path: &str) -> Checked {
    if path.split('/').any(|element| element == "..") {
        return Err(Violation::new(field, path, "contains a '..' element; it must not"));
    }
    Ok(())
}

/// Projected sources may not write the same path twice.
fn check_unique_paths(paths: &[&str]) -> Checked {
    for (index, path) in paths.iter().enumerate() {
        if !path.is_empty() && paths[..index].contains(path) {
            return Err(Violation::new(
                "projected.sources",
                path,
                "is a path written by two sources; paths must not conflict",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn volume(value: serde_json::Value) -> Volume {
        serde_json::from_value(value).unwrap()
    }

    fn field_of(value: serde_json::Value) -> Option<String> {
        check_volume(&volume(value)).err().map(|violation| violation.field)
    }

    #[test]
    fn names_are_dns_labels() {
        assert!(is_dns_label("certs-1"));
        assert!(is_dns_label(&"a".repeat(63)));
        for bad in ["", "Bad_Name", "a.b", "-a", "a-", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn volumes_break_the_api_servers_rules() {
        assert_eq!(
            field_of(json!({"name": "ok", "secret": {"secretName": "x", "defaultMode": 0o644}})),
            None
        );
        assert_eq!(field_of(json!({"name": "ok"})), None, "no source is an emptyDir");
        let cases = [
            (json!({"name": "Bad", "emptyDir": {}}), "name"),
            (
                json!({"name": "v", "emptyDir": {}, "secret": {"secretName": "x"}}),
                "volume sources",
            ),
            (
                json!({"name": "v", "secret": {"secretName": "x", "defaultMode": 512}}),
                "secret.defaultMode",
            ),
            (json!({"name": "v", "secret": {"secretName": ""}}), "secret.secretName"),
            (
                json!({"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}}),
                "configMap.items[0].path",
            ),
            (
                json!({"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "a/../b"}]}}),
                "configMap.items[0].path",
            ),
            (
                json!({"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "..a"}]}}),
                "configMap.items[0].path",
            ),
            (
                json!({"name": "v", "configMap": {"name": "c", "items": [{"key": "k", "path": "a", "mode": -1}]}}),
                "configMap.items[0].mode",
            ),
            (
                json!({"name": "v", "downwardAPI": {"items": [{"path": "l"}]}}),
                "downwardAPI.items[0]",
            ),
            (
                json!({"name": "v", "projected": {"defaultMode": 1000, "sources": []}}),
                "projected.defaultMode",
            ),
            (
                json!({"name": "v", "projected": {"sources": [
                    {"configMap": {"name": "a", "items": [{"key": "k", "path": "p"}]}},
                    {"secret": {"name": "b", "items": [{"key": "k", "path": "p"}]}},
                ]}}),
                "projected.sources",
            ),
            (
                json!({"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]}}),
                "projected.sources[0].serviceAccountToken.expirationSeconds",
            ),
            (json!({"name": "v", "hostPath": {"path": "/a/../b"}}), "hostPath.path"),
        ];
        for (value, field) in cases {
            assert_eq!(field_of(value.clone()).as_deref(), Some(field), "{value}");
        }
    }

    #[test]
    fn mounts_break_the_api_servers_rules() {
        let mount = |value: serde_json::Value| -> VolumeMount { serde_json::from_value(value).unwrap() };
        let field =
            |value: serde_json::Value, privileged: bool| check_mount(&mount(value), privileged).err().map(|v| v.field);
        assert_eq!(
            field(json!({"name": "v", "mountPath": "/m", "subPath": "a/b"}), false),
            None
        );
        assert_eq!(
            field(
                json!({"name": "v", "mountPath": "/m", "mountPropagation": "Bidirectional"}),
                true
            ),
            None
        );
        let cases = [
            (json!({"name": "v", "mountPath": ""}), "mountPath"),
            (json!({"name": "v", "mountPath": "/m", "subPath": "/abs"}), "subPath"),
            (json!({"name": "v", "mountPath": "/m", "subPath": "../up"}), "subPath"),
            (
                json!({"name": "v", "mountPath": "/m", "subPath": "a", "subPathExpr": "$(X)"}),
                "subPathExpr",
            ),
            (
                json!({"name": "v", "mountPath": "/m", "mountPropagation": "Bidirectional"}),
                "mountPropagation",
            ),
            (
                json!({"name": "v", "mountPath": "/m", "mountPropagation": "Sideways"}),
                "mountPropagation",
            ),
            (
                json!({"name": "v", "mountPath": "/m", "recursiveReadOnly": "Enabled"}),
                "recursiveReadOnly",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(field(value.clone(), false).as_deref(), Some(expected), "{value}");
        }
    }
}
