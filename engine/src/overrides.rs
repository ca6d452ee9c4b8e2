//! User overrides of the injected containers, merged the way istiod merges them.
//!
//! A pod may carry its own `istio-proxy` (in `containers` or `initContainers`) or
//! `istio-init`/`istio-validation` container. Its fields are laid over ours: mappings
//! merge key by key, `env`, `ports` and `volumeMounts` merge by their keys, other lists
//! replace ours, and `image: auto` keeps our image. The user's container is removed from
//! where it stood and the merged one takes the injected container's place. Resources set
//! on an override enter resolution as the most specific source, so bounds and LimitRanges
//! still apply to them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Deserialize;
use serde_json::Value;

use super::decision::PROXY_CONTAINER;
use crate::annotations::OVERRIDES_FORMS;
use crate::error::{InjectError, quoted};

/// Where istiod records the user's override containers, so re-injection can reapply them.
pub use crate::annotations::OVERRIDES as OVERRIDES_ANNOTATION;

/// The ports of the injected `istio-proxy` (container port and name), as istiod's template
/// declares them: Envoy's Prometheus endpoint.
pub(crate) const PROXY_PORTS: [(i32, &str); 1] = [(15090, "http-envoy-prom")];

/// Where a user's container stands in the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// `containers` or `initContainers`.
    pub list: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container as JSON.
    pub container: Value,
}

/// The user's `istio-proxy` and init container, when present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// The proxy override.
    pub proxy: Option<Override>,
    /// The init container override.
    pub init: Option<Override>,
}

impl Overrides {
    /// Finds overrides in `spec`; `init_name` is the init container we would add.
    pub fn find(spec: &PodSpec, init_name: &str) -> Overrides {
        let find = |name: &str| {
            let in_list = |list: &'static str, containers: &[Container]| {
                containers.iter().position(|c| c.name == name).map(|index| Override {
                    list,
                    index,
                    container: serde_json::to_value(&containers[index]).unwrap_or(Value::Null),
                })
            };
            in_list("containers", &spec.containers)
                .or_else(|| in_list("initContainers", spec.init_containers.as_deref().unwrap_or_default()))
        };
        Overrides {
            proxy: find(PROXY_CONTAINER),
            init: find(init_name),
        }
    }

    /// The user's proxy container, typed, for resources and security settings.
    pub fn proxy_container(&self) -> Option<Container> {
        self.proxy
            .as_ref()
            .and_then(|o| serde_json::from_value(o.container.clone()).ok())
    }

    /// Removals, in an order that keeps the remaining indices valid (highest first per list).
    pub fn removals(&self) -> Vec<(&'static str, usize)> {
        let mut removals: Vec<(&'static str, usize)> = [&self.proxy, &self.init]
            .into_iter()
            .flatten()
            .map(|o| (o.list, o.index))
            .collect();
        removals.sort_by_key(|removal| std::cmp::Reverse(removal.1));
        removals
    }

    /// istiod's `proxy.istio.io/overrides` annotation: the user's containers, each under the
    /// list the injected container takes (`initContainers` for native sidecars). `None`
    /// when there are no overrides.
    pub fn annotation(&self, native: bool) -> Option<String> {
        let recorded = |user: &Override| {
            let mut container = user.container.clone();
            if let Some(fields) = container.as_object_mut()
                && fields.get("image").is_some_and(|image| image == "auto")
            {
                fields.remove("image");
            }
            container
        };
        let mut init_containers = Vec::new();
        let mut containers = Vec::new();
        if let Some(init) = &self.init {
            init_containers.push(recorded(init));
        }
        if let Some(proxy) = &self.proxy {
            if native {
                init_containers.push(recorded(proxy));
            } else {
                containers.push(recorded(proxy));
            }
        }
        let mut lists = serde_json::Map::new();
        if !init_containers.is_empty() {
            lists.insert("initContainers".into(), Value::Array(init_containers));
        }
        if !containers.is_empty() {
            lists.insert("containers".into(), Value::Array(containers));
        }
        (!lists.is_empty()).then(|| Value::Object(lists).to_string())
    }

    /// Refuses an override whose fields Kubernetes forbids where injection moves it: an app
    /// container named like our init container becomes an init container (no probes or
    /// lifecycle without `restartPolicy: Always`), and in the classic layout an `istio-proxy`
    /// from the init containers becomes a regular container (no `restartPolicy`).
    pub(crate) fn check_placement(&self, native: bool) -> Result<(), InjectError> {
        if let Some(init) = self.init.as_ref().filter(|o| o.list == "containers")
            && let Some(field) = INIT_FORBIDDEN.into_iter().find(|field| is_set(&init.container, field))
        {
            return Err(moved(
                init,
                field,
                "an init container without restartPolicy: Always",
                "rename the app container, or remove its probes and lifecycle",
            ));
        }
        if let Some(proxy) = self.proxy.as_ref().filter(|o| o.list == "initContainers" && !native)
            && is_set(&proxy.container, "restartPolicy")
        {
            return Err(moved(
                proxy,
                "restartPolicy",
                "a regular container (the classic layout puts istio-proxy among the containers)",
                "use the native sidecar layout (sidecar.istio.io/nativeSidecar: \"true\"), or remove restartPolicy",
            ));
        }
        Ok(())
    }

    /// Refuses a port of the pod's own `istio-proxy` that merging would leave beside one of
    /// ours under the same name: ports merge by `containerPort`, so a user port with another
    /// number and our port's name makes two ports of one name, which the API server refuses
    /// (port names are unique within a container).
    pub(crate) fn check_proxy_ports(&self) -> Result<(), InjectError> {
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let ports = proxy.container["ports"].as_array().map_or(&[][..], Vec::as_slice);
        let replaced = |ours: i32| {
            ports
                .iter()
                .any(|port| port["containerPort"].as_i64() == Some(i64::from(ours)))
        };
        for (index, port) in ports.iter().enumerate() {
            let name = port["name"].as_str().unwrap_or_default();
            let clash = PROXY_PORTS
                .iter()
                .find(|(ours, our_name)| *our_name == name && !replaced(*ours));
            if let Some((ours, _)) = clash {
                return Err(InjectError::ProxyPortNameTaken {
                    location: format!("spec.{}[{}].ports[{index}].name", proxy.list, proxy.index),
                    name: name.to_string(),
                    port: port["containerPort"].as_i64().unwrap_or_default(),
                    ours: *ours,
                });
            }
        }
        Ok(())
    }

    /// How many items each list loses.
    pub fn removed_from(&self, list: &str) -> usize {
        self.removals().iter().filter(|(l, _)| *l == list).count()
    }
}

/// Checks `proxy.istio.io/overrides` as istiod reads it on every pod (Go's `json.Unmarshal`
/// into `{containers, initContainers}`, each a list of containers): JSON, not YAML; an object
/// or `null`; the two lists, when set, lists of containers. istiod refuses anything else, so
/// we do too, naming the fault. Other keys are ignored, as Go ignores them.
pub(crate) fn check_recorded(annotations: Option<&BTreeMap<String, String>>) -> Result<(), InjectError> {
    let Some(text) = annotations.and_then(|map| map.get(OVERRIDES_ANNOTATION)) else {
        return Ok(());
    };
    let invalid = |reason: String| InjectError::InvalidAnnotation {
        annotation: OVERRIDES_ANNOTATION.into(),
        value: quoted(text),
        reason,
        accepted: OVERRIDES_FORMS,
    };
    let value: Value = serde_json::from_str(text).map_err(|error| invalid(format!("it is not JSON ({error})")))?;
    let fields = match value {
        Value::Null => return Ok(()),
        Value::Object(fields) => fields,
        _ => return Err(invalid("it is not a JSON object".into())),
    };
    for (key, list) in &fields {
        // Go matches a JSON key to a struct field ignoring case.
        let Some(name) = ["containers", "initContainers"]
            .into_iter()
            .find(|name| key.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        if list.is_null() {
            continue;
        }
        Vec::<Container>::deserialize(list)
            .map_err(|error| invalid(format!("{name} is not a list of containers ({error})")))?;
    }
    Ok(())
}

/// Fields the API server refuses on an init container without `restartPolicy: Always`.
const INIT_FORBIDDEN: [&str; 4] = ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"];

fn is_set(container: &Value, field: &str) -> bool {
    container.get(field).is_some_and(|value| !value.is_null())
}

fn moved(user: &Override, field: &'static str, destination: &'static str, accepted: &'static str) -> InjectError {
    InjectError::MovedContainerField {
        container: user.container["name"].as_str().unwrap_or_default().to_string(),
        location: format!("spec.{}[{}]", user.list, user.index),
        field,
        destination,
        accepted,
    }
}

/// The key list items of `field` merge by, as in Kubernetes' strategic merge.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "env" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        _ => None,
    }
}

/// Lays `overlay` over `base`.
pub fn merge_container(base: &mut Value, overlay: &Value) {
    let (Some(base), Some(overlay)) = (base.as_object_mut(), overlay.as_object()) else {
        return;
    };
    for (field, value) in overlay {
        if value.is_null() || (field == "image" && value == "auto") {
            continue;
        }
        match (base.get_mut(field), merge_key(field), value) {
            (Some(Value::Array(ours)), Some(key), Value::Array(theirs)) => {
                for item in theirs {
                    match ours.iter_mut().find(|existing| existing.get(key) == item.get(key)) {
                        Some(existing) => *existing = item.clone(),
                        None => ours.push(item.clone()),
                    }
                }
            }
            (Some(ours @ Value::Object(_)), _, Value::Object(_)) => merge_object(ours, value),
            _ => {
                base.insert(field.clone(), value.clone());
            }
        }
    }
}

/// The action of a probe or lifecycle hook: Kubernetes allows exactly one per handler.
const HANDLER_KEYS: [&str; 5] = ["exec", "httpGet", "tcpSocket", "grpc", "sleep"];

fn merge_object(base: &mut Value, overlay: &Value) {
    let (Some(base), Some(overlay)) = (base.as_object_mut(), overlay.as_object()) else {
        return;
    };
    // The user's probe or hook action replaces ours: two would be refused.
    if HANDLER_KEYS
        .iter()
        .any(|key| overlay.get(*key).is_some_and(|v| !v.is_null()))
    {
        for key in HANDLER_KEYS {
            base.remove(key);
        }
    }
    for (key, value) in overlay {
        match base.get_mut(key) {
            Some(ours @ Value::Object(_)) if value.is_object() => merge_object(ours, value),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Overrides of a pod whose own `istio-proxy` (second container) has `ports`.
    fn own_proxy_with_ports(ports: Value) -> Overrides {
        let spec: PodSpec = serde_json::from_value(json!({"containers": [
            {"name": "app", "image": "app"}, {"name": "istio-proxy", "image": "auto", "ports": ports}]}))
        .unwrap();
        Overrides::find(&spec, "istio-init")
    }

    #[test]
    fn an_own_proxy_port_may_not_take_our_port_name_under_another_number() {
        let taken = own_proxy_with_ports(json!([{"containerPort": 9090, "name": "http-envoy-prom"}]));
        let error = taken.check_proxy_ports().unwrap_err().to_string();
        assert!(
            error.starts_with("spec.containers[1].ports[0].name: the pod's own istio-proxy names its port 9090 \"http-envoy-prom\", the name of the injected istio-proxy's port 15090"),
            "{error}"
        );
        // Our number replaces our port; other names stand beside it.
        for fine in [
            json!([{"containerPort": 15090, "name": "http-envoy-prom"}]),
            json!([{"containerPort": 15090, "name": "metrics"}, {"containerPort": 9090, "name": "http-envoy-prom"}]),
            json!([{"containerPort": 9090, "name": "admin"}]),
        ] {
            assert!(own_proxy_with_ports(fine.clone()).check_proxy_ports().is_ok(), "{fine}");
        }
        // And the merge gives what the check expects: names unique.
        let mut ours = json!({"ports": [{"containerPort": 15090, "name": "http-envoy-prom"}]});
        merge_container(
            &mut ours,
            &json!({"ports": [{"containerPort": 15090, "name": "metrics"}, {"containerPort": 9090, "name": "http-envoy-prom"}]}),
        );
        assert_eq!(ours["ports"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn overlays_fields_lists_by_key_and_keeps_our_image_for_auto() {
        let mut ours = json!({
            "name": "istio-proxy", "image": "proxyv2", "args": ["proxy", "sidecar"],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "securityContext": {"runAsUser": 1337, "capabilities": {"drop": ["ALL"]}},
        });
        let theirs = json!({
            "name": "istio-proxy", "image": "auto", "args": ["-c", "x.yaml"],
            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
            "securityContext": {"runAsUser": 1234}, "tty": true,
        });
        merge_container(&mut ours, &theirs);
        assert_eq!(ours["image"], "proxyv2");
        assert_eq!(ours["args"], json!(["-c", "x.yaml"]));
        assert_eq!(
            ours["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(
            ours["securityContext"],
            json!({"runAsUser": 1234, "capabilities": {"drop": ["ALL"]}})
        );
        assert_eq!(ours["tty"], true);
    }

    #[test]
    fn a_users_probe_action_replaces_ours() {
        let mut ours = json!({"name": "istio-proxy", "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15}});
        let theirs = json!({"name": "istio-proxy", "readinessProbe": {"tcpSocket": {"port": 15021}}});
        merge_container(&mut ours, &theirs);
        assert_eq!(
            ours["readinessProbe"],
            json!({"tcpSocket": {"port": 15021}, "periodSeconds": 15})
        );
    }

    /// istiod decodes the annotation on every pod and refuses what does not decode; so do we.
    #[test]
    fn recorded_overrides_that_istiod_cannot_decode_are_refused() {
        let check = |text: &str| {
            let annotations = BTreeMap::from([(OVERRIDES_ANNOTATION.to_string(), text.to_string())]);
            check_recorded(Some(&annotations))
        };
        assert!(check_recorded(None).is_ok());
        for good in [
            "{}",
            "null",
            " {} ",
            r#"{"a": 1}"#,
            r#"{"containers": null}"#,
            r#"{"containers": [{"name": "istio-proxy", "image": "auto"}]}"#,
            r#"{"initContainers": [{"name": "istio-init", "args": ["x"]}], "containers": []}"#,
        ] {
            assert!(check(good).is_ok(), "{good}: {:?}", check(good));
        }
        for (bad, says) in [
            ("[]", "it is not a JSON object"),
            ("[{\"name\": \"istio-proxy\"}]", "it is not a JSON object"),
            ("\"x\"", "it is not a JSON object"),
            ("3", "it is not a JSON object"),
            ("true", "it is not a JSON object"),
            ("{", "it is not JSON"),
            ("", "it is not JSON"),
            ("containers: []", "it is not JSON"),
            (r#"{"containers": {}}"#, "containers is not a list of containers"),
            (r#"{"Containers": 3}"#, "containers is not a list of containers"),
            (
                r#"{"initContainers": [{"name": 3}]}"#,
                "initContainers is not a list of containers",
            ),
            (
                r#"{"containers": [{"name": "p", "args": "x"}]}"#,
                "containers is not a list of containers",
            ),
        ] {
            let error = check(bad).expect_err(bad).to_string();
            assert!(
                error.starts_with(&format!("annotation {OVERRIDES_ANNOTATION} has value {:?}", bad))
                    && error.contains(says),
                "{bad}: {error}"
            );
            assert!(error.contains(OVERRIDES_FORMS), "{error}");
        }
    }

    #[test]
    fn overrides_moved_where_their_fields_are_forbidden_are_refused() {
        let spec = |value: Value| -> PodSpec { serde_json::from_value(value).unwrap() };
        let probe = json!({"tcpSocket": {"port": 80}});
        let app_named_init = spec(json!({"containers": [
            {"name": "app", "image": "a"},
            {"name": "istio-init", "image": "b", "readinessProbe": probe},
        ]}));
        let error = Overrides::find(&app_named_init, "istio-init")
            .check_placement(false)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("the pod's own istio-init container (spec.containers[1]) sets readinessProbe"),
            "{error}"
        );
        let native_proxy = spec(json!({
            "containers": [{"name": "app", "image": "a"}],
            "initContainers": [{"name": "istio-proxy", "image": "auto", "restartPolicy": "Always"}],
        }));
        let overrides = Overrides::find(&native_proxy, "istio-init");
        assert!(overrides.check_placement(true).is_ok());
        assert!(
            overrides
                .check_placement(false)
                .unwrap_err()
                .to_string()
                .contains("sets restartPolicy")
        );
    }
}
