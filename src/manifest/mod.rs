//! Kubernetes manifests: YAML documents, `List`s, and the pod templates of workload kinds.
//!
//! Offline `inject`, `explain` and the tests read manifests only through here, so they
//! agree on what a document is, which kinds hold a pod template and where: `yaml` turns
//! text into JSON values and back, and `workloads` finds the pod templates in them.

mod workloads;
mod yaml;

use serde_json::Value;

pub use self::workloads::{PodTemplate, pod_templates, pod_templates_mut, template_as_pod};
pub(crate) use self::workloads::{pod_from_template, workload_kinds};
pub use self::yaml::{ManifestError, read_documents, write_documents};

/// Every object in `text`: its documents, with the items of `List`s in their place.
pub fn read_objects(text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut objects = Vec::new();
    for document in read_documents(text)? {
        flatten_into(document, &mut objects);
    }
    Ok(objects)
}

fn flatten_into(document: Value, out: &mut Vec<Value>) {
    match document {
        Value::Object(mut object) if is_list(&object) => {
            if let Some(Value::Array(items)) = object.remove("items") {
                items.into_iter().for_each(|item| flatten_into(item, out));
            }
        }
        other => out.push(other),
    }
}

fn is_list(object: &serde_json::Map<String, Value>) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("List")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_flattened_in_place() {
        let text = "kind: List\nitems:\n- kind: Service\n- kind: List\n  items:\n  - kind: Pod\n---\nkind: Job\n";
        let kinds: Vec<Value> = read_objects(text)
            .unwrap()
            .into_iter()
            .map(|object| object["kind"].clone())
            .collect();
        assert_eq!(kinds, ["Service", "Pod", "Job"]);
    }
}
