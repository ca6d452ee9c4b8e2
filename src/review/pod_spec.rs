//! Reading a Pod's spec from a review in one pass: only the fields the engine reads
//! (`READ_FIELDS`), and of the pod's own app containers only the fields it reads.
//!
//! Of the spec's other fields (tolerations, affinity, scheduling, DNS...) none is read, and a
//! pod volume is read as its name. A test fails when an engine source starts to name a
//! field this reader leaves out.
//!
//! An app container's `env`, `envFrom`, `command`, `args`, `workingDir`, `volumeMounts`,
//! `volumeDevices`, `imagePullPolicy`, `securityContext`, `terminationMessage*`, `stdin*`,
//! `tty` and `restartPolicyRules` are skipped (the heaviest are not even in the text this
//! reads: `super::scan`). A container the engine merges with its own (`istio-proxy`,
//! `istio-init`, `istio-validation`, [`is_injected_container`]) needs them all, so this
//! reader refuses it ([`ReadInFull`]) and the pod is read again as k8s-openapi reads it. The
//! fields the engine reads of every container (name, image, ports, resources, resize and
//! restart policy, probes, lifecycle) are always typed. `tests/corpus.rs` checks that the engine's
//! answer through this reader equals its answer on the whole Pod for every pod of Istio's
//! corpus, its injected outputs included.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerResizePolicy, Lifecycle, LocalObjectReference, PodSecurityContext, PodSpec,
    Probe, ResourceRequirements, Volume,
};
use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::engine::is_injected_container;

/// `spec`, with only the fields the engine reads (`READ_FIELDS`); the others are
/// skipped, and each pod volume is read as its name alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReadSpec {
    #[serde(default, deserialize_with = "containers")]
    containers: Vec<Container>,
    #[serde(default, deserialize_with = "container_list")]
    init_containers: Option<Vec<Container>>,
    #[serde(default)]
    volumes: Option<Vec<ReadVolume>>,
    #[serde(default)]
    active_deadline_seconds: Option<i64>,
    #[serde(default)]
    host_network: Option<bool>,
    #[serde(default)]
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default)]
    priority_class_name: Option<String>,
    #[serde(default)]
    resources: Option<ResourceRequirements>,
    #[serde(default)]
    restart_policy: Option<String>,
    #[serde(default)]
    security_context: Option<PodSecurityContext>,
    #[serde(default)]
    service_account_name: Option<String>,
}

/// The `PodSpec` fields (k8s-openapi's names) that [`ReadSpec`] reads. The engine reads no
/// other: a test fails when an engine source names one of the others.
#[cfg(test)]
const READ_FIELDS: [&str; 11] = [
    "containers",
    "init_containers",
    "volumes",
    "active_deadline_seconds",
    "host_network",
    "image_pull_secrets",
    "priority_class_name",
    "resources",
    "restart_policy",
    "security_context",
    "service_account_name",
];

/// A pod volume: the engine reads only its name (to leave out a volume of ours the pod
/// already has, and to check the user volumes' names against the pod's).
#[derive(Debug, Clone, Deserialize)]
struct ReadVolume {
    name: String,
}

impl From<ReadSpec> for PodSpec {
    fn from(read: ReadSpec) -> Self {
        PodSpec {
            containers: read.containers,
            init_containers: read.init_containers,
            volumes: read.volumes.map(|volumes| {
                volumes
                    .into_iter()
                    .map(|volume| Volume {
                        name: volume.name,
                        ..Volume::default()
                    })
                    .collect()
            }),
            active_deadline_seconds: read.active_deadline_seconds,
            host_network: read.host_network,
            image_pull_secrets: read.image_pull_secrets,
            priority_class_name: read.priority_class_name,
            resources: read.resources,
            restart_policy: read.restart_policy,
            security_context: read.security_context,
            service_account_name: read.service_account_name,
            ..PodSpec::default()
        }
    }
}

/// `spec.containers`: missing or null reads as empty, as k8s-openapi reads it.
fn containers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Container>, D::Error> {
    Ok(container_list(deserializer)?.unwrap_or_default())
}

/// A list of containers (`spec.initContainers`, and `spec.containers` before its default),
/// each read by [`ReadContainer`].
fn container_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Container>>, D::Error> {
    Ok(Option::<ContainerList>::deserialize(deserializer)?.map(|list| list.0))
}

/// Room for this many containers is made at once: a `Container` is large, and a list grown
/// one by one moves the containers read so far at each step.
const CONTAINERS_RESERVED: usize = 4;

/// A list of containers, each turned into a `Container` as it is read.
struct ContainerList(Vec<Container>);

impl<'de> Deserialize<'de> for ContainerList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ContainerListVisitor)
    }
}

struct ContainerListVisitor;

impl<'de> Visitor<'de> for ContainerListVisitor {
    type Value = ContainerList;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<ContainerList, A::Error> {
        let mut containers = Vec::with_capacity(CONTAINERS_RESERVED);
        while let Some(read) = items.next_element::<ReadContainer>()? {
            containers.push(read.into_container().map_err(A::Error::custom)?);
        }
        Ok(ContainerList(containers))
    }
}

/// One container as sent: the fields the engine reads of every container, typed; the rest
/// are skipped. A container the engine merges with its own is not read here at all.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadContainer {
    #[serde(default)]
    name: Option<String>,
    image: Option<String>,
    ports: Option<Vec<ContainerPort>>,
    resources: Option<ResourceRequirements>,
    resize_policy: Option<Vec<ContainerResizePolicy>>,
    restart_policy: Option<String>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
    lifecycle: Option<Lifecycle>,
}

/// Why a pod is read again in full: it carries a container the engine merges with its own,
/// whose every field the engine reads.
#[derive(Debug, thiserror::Error)]
#[error("container {0:?} is merged with the injected one and is read in full")]
pub(super) struct ReadInFull(String);

impl ReadContainer {
    /// The container, unless the engine merges it with its own ([`ReadInFull`]).
    fn into_container(self) -> Result<Container, ReadInFull> {
        let name = self.name.unwrap_or_default();
        if is_injected_container(&name) {
            return Err(ReadInFull(name));
        }
        Ok(Container {
            name,
            image: self.image,
            ports: self.ports,
            resources: self.resources,
            resize_policy: self.resize_policy,
            restart_policy: self.restart_policy,
            liveness_probe: self.liveness_probe,
            readiness_probe: self.readiness_probe,
            startup_probe: self.startup_probe,
            lifecycle: self.lifecycle,
            ..Container::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde::de::{self, Visitor};

    use super::*;

    /// The JSON field names k8s-openapi's `PodSpec` reads, as it hands them to serde.
    fn pod_spec_fields() -> &'static [&'static str] {
        /// A deserializer that only records the fields a struct asks for.
        struct Fields;
        #[derive(Debug)]
        struct Recorded(&'static [&'static str]);
        impl std::fmt::Display for Recorded {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} fields", self.0.len())
            }
        }
        impl std::error::Error for Recorded {}
        impl de::Error for Recorded {
            fn custom<T: std::fmt::Display>(_: T) -> Self {
                Recorded(&[])
            }
        }
        impl<'de> de::Deserializer<'de> for Fields {
            type Error = Recorded;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Recorded> {
                Err(Recorded(&[]))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Recorded> {
                Err(Recorded(fields))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
                ignored_any
            }
        }
        match PodSpec::deserialize(Fields) {
            Err(Recorded(fields)) => fields,
            Ok(_) => panic!("PodSpec read from nothing"),
        }
    }

    /// `hostIPC` → `host_ipc`, `setHostnameAsFQDN` → `set_hostname_as_fqdn`.
    fn snake_case(camel: &str) -> String {
        let chars: Vec<char> = camel.chars().collect();
        let mut snake = String::new();
        for (index, &c) in chars.iter().enumerate() {
            let after_lower = index > 0 && !chars[index - 1].is_uppercase();
            let ends_acronym = index > 0
                && chars[index - 1].is_uppercase()
                && chars.get(index + 1).is_some_and(|next| next.is_lowercase());
            if c.is_uppercase() && (after_lower || ends_acronym) {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        snake
    }

    fn sources(dir: &Path, found: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") && !path.ends_with("review/pod_spec.rs") {
                found.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }

    #[test]
    fn field_names_read_as_k8s_openapi_names_them() {
        assert_eq!(snake_case("hostIPC"), "host_ipc");
        assert_eq!(snake_case("setHostnameAsFQDN"), "set_hostname_as_fqdn");
        assert_eq!(snake_case("initContainers"), "init_containers");
        let fields: Vec<String> = pod_spec_fields().iter().map(|field| snake_case(field)).collect();
        assert!(fields.len() > 30, "{fields:?}");
        for read in READ_FIELDS {
            assert!(
                fields.iter().any(|field| field == read),
                "{read} is not a PodSpec field"
            );
        }
    }

    #[test]
    fn no_source_reads_a_spec_field_the_reader_leaves_out() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        sources(&root.join("engine/src"), &mut found);
        sources(&root.join("src"), &mut found);
        assert!(found.len() > 100, "{} sources", found.len());
        let mut read = Vec::new();
        for field in pod_spec_fields().iter().map(|field| snake_case(field)) {
            if READ_FIELDS.contains(&field.as_str()) {
                continue;
            }
            let access = format!(".{field}");
            for (path, text) in &found {
                let named = text
                    .match_indices(&access)
                    .any(|(at, _)| !text[at + access.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
                if named {
                    read.push(format!("{} reads spec.{field}", path.display()));
                }
            }
        }
        assert!(
            read.is_empty(),
            "add these to READ_FIELDS and ReadSpec:\n{}",
            read.join("\n")
        );
    }

    #[test]
    fn the_fields_left_out_are_not_read_and_volumes_keep_their_names() {
        let spec: ReadSpec = serde_json::from_value(serde_json::json!({
            "containers": [{"name": "app"}],
            "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "priorityClassName": "high",
            "activeDeadlineSeconds": 60,
        }))
        .unwrap();
        let spec = PodSpec::from(spec);
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes[0].name, "config");
        assert!(volumes[0].config_map.is_none());
        assert!(spec.tolerations.is_none());
        assert_eq!(spec.priority_class_name.as_deref(), Some("high"));
        assert_eq!(spec.active_deadline_seconds, Some(60));
        assert_eq!(spec.containers[0].name, "app");
    }
}
