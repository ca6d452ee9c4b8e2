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
//! fields the engine reads of every container (name, image, ports, resize and restart policy,
//! probes, lifecycle) are always typed. Its `resources` are read as the amounts they set
//! ([`ReadResources`], [`AppAmounts`]), each quantity parsed as it is read and no map built;
//! the engine sizes from those amounts alone. `tests/corpus.rs` checks that the engine's
//! answer through this reader equals its answer on the whole Pod for every pod of Istio's
//! corpus, its injected outputs included.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ContainerResizePolicy, Lifecycle, LocalObjectReference, PodSecurityContext, PodSpec,
    Probe, ResourceClaim, ResourceRequirements, Volume,
};
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::engine::{AppAmounts, ContainerAmounts, ListAmounts, Resource, Side, is_injected_container};

/// `spec`, with only the fields the engine reads (`READ_FIELDS`); the others are
/// skipped, and each pod volume is read as its name alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReadSpec {
    #[serde(default)]
    containers: Option<ContainerList>,
    #[serde(default)]
    init_containers: Option<ContainerList>,
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

/// A spec as read, with its containers' amounts when the reader kept them out of it.
pub(super) trait IntoSpec {
    /// The spec, and the amounts of its containers (`None`: read them from the spec).
    fn into_spec(self) -> (PodSpec, Option<AppAmounts>);
}

impl IntoSpec for PodSpec {
    fn into_spec(self) -> (PodSpec, Option<AppAmounts>) {
        (self, None)
    }
}

impl IntoSpec for ReadSpec {
    fn into_spec(self) -> (PodSpec, Option<AppAmounts>) {
        // A missing or null `spec.containers` reads as empty, as k8s-openapi reads it.
        let containers = self.containers.unwrap_or_default();
        let (init_containers, init_amounts) = match self.init_containers {
            Some(list) => (Some(list.containers), list.amounts),
            None => (None, ListAmounts::default()),
        };
        let amounts = AppAmounts::new(containers.amounts, init_amounts);
        let spec = PodSpec {
            containers: containers.containers,
            init_containers,
            volumes: self.volumes.map(|volumes| {
                volumes
                    .into_iter()
                    .map(|volume| Volume {
                        name: volume.name,
                        ..Volume::default()
                    })
                    .collect()
            }),
            active_deadline_seconds: self.active_deadline_seconds,
            host_network: self.host_network,
            image_pull_secrets: self.image_pull_secrets,
            priority_class_name: self.priority_class_name,
            resources: self.resources,
            restart_policy: self.restart_policy,
            security_context: self.security_context,
            service_account_name: self.service_account_name,
            ..PodSpec::default()
        };
        (spec, Some(amounts))
    }
}

/// Room for this many containers is made at once: a `Container` is large, and a list grown
/// one by one moves the containers read so far at each step.
const CONTAINERS_RESERVED: usize = 4;

/// A list of containers (`spec.containers`, `spec.initContainers`), each read by
/// [`ReadContainer`] into a `Container` without its `resources` and the amounts those set.
#[derive(Debug, Clone, Default)]
struct ContainerList {
    containers: Vec<Container>,
    amounts: ListAmounts,
}

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
        let mut list = ContainerList {
            containers: Vec::with_capacity(CONTAINERS_RESERVED),
            amounts: ListAmounts::default(),
        };
        while let Some(read) = items.next_element::<ReadContainer>()? {
            let (container, amounts) = read.into_container().map_err(A::Error::custom)?;
            list.amounts.record(list.containers.len(), amounts);
            list.containers.push(container);
        }
        Ok(list)
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
    resources: Option<ReadResources>,
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
    /// The container without its `resources`, and their amounts, unless the engine merges it
    /// with its own ([`ReadInFull`]).
    fn into_container(self) -> Result<(Container, ContainerAmounts), ReadInFull> {
        let name = self.name.unwrap_or_default();
        if is_injected_container(&name) {
            return Err(ReadInFull(name));
        }
        let amounts = self.resources.map(|read| read.0).unwrap_or_default();
        let container = Container {
            name,
            image: self.image,
            ports: self.ports,
            resize_policy: self.resize_policy,
            restart_policy: self.restart_policy,
            liveness_probe: self.liveness_probe,
            readiness_probe: self.readiness_probe,
            startup_probe: self.startup_probe,
            lifecycle: self.lifecycle,
            ..Container::default()
        };
        Ok((container, amounts))
    }
}

/// A container's `resources`, as the amounts its `requests` and `limits` set: each value is
/// parsed as it is read, and no map is built. A value that is not a string fails as it
/// fails k8s-openapi, and so does a malformed `claims`, which is read and dropped (the
/// engine sizes no claim); any other key is skipped, as k8s-openapi skips it.
struct ReadResources(ContainerAmounts);

impl<'de> Deserialize<'de> for ReadResources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourcesVisitor)
    }
}

struct ResourcesVisitor;

impl<'de> Visitor<'de> for ResourcesVisitor {
    type Value = ReadResources;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a ResourceRequirements object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ReadResources, A::Error> {
        let mut amounts = ContainerAmounts::default();
        while let Some(key) = map.next_key::<ResourcesKey>()? {
            match key {
                ResourcesKey::Side(side) => {
                    // A key given twice counts once, its last value, as in k8s-openapi.
                    amounts.clear(side);
                    map.next_value_seed(SideAmounts {
                        side,
                        amounts: &mut amounts,
                    })?;
                }
                ResourcesKey::Claims => {
                    map.next_value::<Option<Vec<ResourceClaim>>>()?;
                }
                ResourcesKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ReadResources(amounts))
    }
}

/// A key of `resources`.
enum ResourcesKey {
    Side(Side),
    Claims,
    Other,
}

impl<'de> Deserialize<'de> for ResourcesKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(NameVisitor(|name: &str| match name {
            "requests" => ResourcesKey::Side(Side::Request),
            "limits" => ResourcesKey::Side(Side::Limit),
            "claims" => ResourcesKey::Claims,
            _ => ResourcesKey::Other,
        }))
    }
}

/// A resource name of `requests` or `limits`: one the engine sizes, or `None`.
struct ResourceName(Option<Resource>);

impl<'de> Deserialize<'de> for ResourceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(NameVisitor(|name: &str| ResourceName(Resource::from_name(name))))
    }
}

/// Reads a string, borrowed or not, into what `read` makes of it, with no copy.
struct NameVisitor<F>(F);

impl<'de, T, F: FnOnce(&str) -> T> Visitor<'de> for NameVisitor<F> {
    type Value = T;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        Ok((self.0)(text))
    }
}

/// `requests` or `limits`, read into `amounts`; null reads as unset.
struct SideAmounts<'a> {
    side: Side,
    amounts: &'a mut ContainerAmounts,
}

impl<'de> DeserializeSeed<'de> for SideAmounts<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for SideAmounts<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a map of resource names to quantities")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(ResourceName(resource)) = map.next_key()? {
            let side = self.side;
            let amounts = &mut *self.amounts;
            // Every value must read as a Quantity does; only the sized ones are kept.
            map.next_value_seed(QuantityText(|text: &str| {
                if let Some(resource) = resource {
                    amounts.set(side, resource, text);
                }
            }))?;
        }
        Ok(())
    }
}

/// A quantity's text, handed to the closure: a string without a copy, or a number as its
/// text, as k8s-openapi's `Quantity` reads one.
struct QuantityText<F>(F);

impl<'de, F: FnOnce(&str)> DeserializeSeed<'de> for QuantityText<F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: FnOnce(&str)> Visitor<'de> for QuantityText<F> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Quantity")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        (self.0)(text);
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<(), E> {
        self.visit_str(&number.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<(), E> {
        self.visit_str(&number.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<(), E> {
        self.visit_str(&number.to_string())
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
        let (spec, _) = spec.into_spec();
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes[0].name, "config");
        assert!(volumes[0].config_map.is_none());
        assert!(spec.tolerations.is_none());
        assert_eq!(spec.priority_class_name.as_deref(), Some("high"));
        assert_eq!(spec.active_deadline_seconds, Some(60));
        assert_eq!(spec.containers[0].name, "app");
    }

    /// The amounts the reader keeps of a spec, and those `AppAmounts::of` reads from the
    /// same spec as k8s-openapi reads it.
    fn both_ways(spec: serde_json::Value) -> (AppAmounts, AppAmounts) {
        let read: ReadSpec = serde_json::from_value(spec.clone()).unwrap();
        let (read_spec, amounts) = read.into_spec();
        assert!(
            read_spec.containers.iter().all(|c| c.resources.is_none()),
            "the reader leaves resources out"
        );
        let pod = k8s_openapi::api::core::v1::Pod {
            spec: Some(serde_json::from_value(spec).unwrap()),
            ..Default::default()
        };
        (amounts.unwrap(), AppAmounts::of(&pod))
    }

    #[test]
    fn resources_read_as_the_amounts_the_full_pod_gives() {
        let spec = serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1"}}},
                {"name": "b", "resources": {"limits": {"memory": "bad", "ephemeral-storage": "1Ki", "nvidia.com/gpu": "1"}}},
                {"name": "c", "resources": {"requests": null, "claims": [{"name": "gpu"}], "extra": [1, 2]}},
                {"name": "d", "resources": null},
                {"name": "e"},
                {"name": "f", "resources": {"requests": {"hugepages-2Mi": "2Mi"}}},
            ],
            "initContainers": [
                {"name": "setup", "restartPolicy": "Always", "resources": {"requests": {"memory": "64Mi"}}},
            ],
        });
        let (read, full) = both_ways(spec);
        assert_eq!(read, full);
        assert_ne!(read, AppAmounts::default(), "the amounts are read at all");
    }

    #[test]
    fn an_escaped_quantity_and_a_repeated_key_read_as_k8s_openapi_reads_them() {
        // `\u0031` is "1": the text is unescaped into a buffer, not borrowed from the body.
        let text = r#"{"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "\u0031", "cpu": "2"},
            "limits": {"memory": "1Gi"},
            "limits": {"cpu": "3"}
        }}]}"#;
        let read: ReadSpec = serde_json::from_str(text).unwrap();
        let (_, read) = read.into_spec();
        let full: PodSpec = serde_json::from_str(text).unwrap();
        let pod = k8s_openapi::api::core::v1::Pod {
            spec: Some(full),
            ..Default::default()
        };
        assert_eq!(read.unwrap(), AppAmounts::of(&pod));
        let escaped = r#"{"containers": [{"name": "a", "resources": {"requests": {"cpu": "\u0031"}}}]}"#;
        let (_, read) = serde_json::from_str::<ReadSpec>(escaped).unwrap().into_spec();
        let pod = k8s_openapi::api::core::v1::Pod {
            spec: Some(serde_json::from_str(escaped).unwrap()),
            ..Default::default()
        };
        assert_eq!(read.unwrap(), AppAmounts::of(&pod));
    }

    #[test]
    fn a_quantity_reads_as_k8s_openapi_reads_it_or_fails_as_it_fails() {
        let numbers = serde_json::json!({"containers": [{"name": "a", "resources": {
            "requests": {"cpu": 2, "memory": 1.5e9}, "limits": {"cpu": -1, "ephemeral-storage": 0.5},
        }}]});
        let (read, full) = both_ways(numbers);
        assert_eq!(read, full);
        assert_ne!(read, AppAmounts::default());
        for bad in [
            serde_json::json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": null}}}]}),
            serde_json::json!({"containers": [{"name": "a", "resources": {"limits": {"other": true}}}]}),
            serde_json::json!({"containers": [{"name": "a", "resources": {"claims": [{"name": 3}]}}]}),
            serde_json::json!({"containers": [{"name": "a", "resources": ["cpu"]}]}),
        ] {
            assert!(serde_json::from_value::<PodSpec>(bad.clone()).is_err(), "{bad}");
            assert!(serde_json::from_value::<ReadSpec>(bad.clone()).is_err(), "{bad}");
        }
    }
}
