//! The pod's containers' CPU, memory and ephemeral-storage amounts, each parsed once.
//!
//! Every step that sizes the proxy from the app (ratios, LimitRange and quota totals, QoS,
//! pod-level growth, quota scopes) reads these amounts, not each container's `resources`
//! maps. The server's pod reader fills them as it reads a review, without building the
//! maps ([`ContainerAmounts::set`]); any other caller gets them from the typed Pod
//! ([`AppAmounts::of`]). A quantity that does not parse counts as unset, as it always has:
//! the API server's own validation refuses the pod for it.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};

use super::{Resource, Side};
use crate::quantity::Quantity;

/// One container's requests and limits, in base units (millicores, bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerAmounts {
    requests: [Option<i64>; 3],
    limits: [Option<i64>; 3],
    declares_cpu_or_memory: bool,
}

/// The amounts of a container the pod does not list: none.
static NONE: ContainerAmounts = ContainerAmounts {
    requests: [None; 3],
    limits: [None; 3],
    declares_cpu_or_memory: false,
};

impl ContainerAmounts {
    /// The amounts of a container's `resources`.
    pub fn of(resources: Option<&ResourceRequirements>) -> ContainerAmounts {
        let mut amounts = ContainerAmounts::default();
        let Some(resources) = resources else { return amounts };
        for (side, map) in [(Side::Request, &resources.requests), (Side::Limit, &resources.limits)] {
            for (name, value) in map.iter().flatten() {
                if let Some(resource) = Resource::from_name(name) {
                    amounts.set(side, resource, &value.0);
                }
            }
        }
        amounts
    }

    /// Records `resource: text` of the container's `requests` or `limits`; a later value of
    /// the same resource replaces an earlier one, as it does in a map.
    pub fn set(&mut self, side: Side, resource: Resource, text: &str) {
        if matches!(resource, Resource::Cpu | Resource::Memory) {
            self.declares_cpu_or_memory = true;
        }
        let units = Quantity::parse(text, resource.kind())
            .ok()
            .map(|quantity| quantity.units());
        self.side_mut(side)[index(resource)] = units;
    }

    /// Forgets one side, for a `requests` or `limits` given again (the last one counts).
    pub fn clear(&mut self, side: Side) {
        *self.side_mut(side) = [None; 3];
    }

    fn side_mut(&mut self, side: Side) -> &mut [Option<i64>; 3] {
        match side {
            Side::Request => &mut self.requests,
            Side::Limit => &mut self.limits,
        }
    }

    /// The request, or the limit when there is no request (the API server's default).
    pub(crate) fn request_or_limit(&self, resource: Resource) -> Option<i64> {
        self.requests[index(resource)].or(self.limits[index(resource)])
    }

    /// The limit.
    pub(crate) fn limit(&self, resource: Resource) -> Option<i64> {
        self.limits[index(resource)]
    }

    /// The amount on `side`, a request defaulting to the limit; 0 when unset.
    pub(crate) fn on_side(&self, resource: Resource, side: Side) -> i64 {
        match side {
            Side::Request => self.request_or_limit(resource),
            Side::Limit => self.limit(resource),
        }
        .unwrap_or(0)
    }

    /// Whether `requests` or `limits` names `cpu` or `memory`, whatever the value (what
    /// makes a pod not BestEffort).
    pub(crate) fn declares_cpu_or_memory(&self) -> bool {
        self.declares_cpu_or_memory
    }
}

fn index(resource: Resource) -> usize {
    match resource {
        Resource::Cpu => 0,
        Resource::Memory => 1,
        Resource::EphemeralStorage => 2,
    }
}

/// The amounts of one list of containers, by position. Only the containers up to the last
/// that sets any are held, so a pod whose containers set none takes no room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListAmounts(Vec<ContainerAmounts>);

impl ListAmounts {
    /// Records the amounts of the container at position `at`.
    pub fn record(&mut self, at: usize, amounts: ContainerAmounts) {
        if amounts == NONE {
            if let Some(held) = self.0.get_mut(at) {
                *held = amounts;
            }
            return;
        }
        if at >= self.0.len() {
            self.0.resize(at + 1, ContainerAmounts::default());
        }
        self.0[at] = amounts;
    }

    /// The amounts of the container at position `at`.
    pub(crate) fn at(&self, at: usize) -> &ContainerAmounts {
        self.0.get(at).unwrap_or(&NONE)
    }
}

/// The amounts of every container of a pod, in the order of `spec.containers` and
/// `spec.initContainers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppAmounts {
    containers: ListAmounts,
    init_containers: ListAmounts,
}

impl AppAmounts {
    /// Amounts read elsewhere, for the pod's two lists.
    pub fn new(containers: ListAmounts, init_containers: ListAmounts) -> AppAmounts {
        AppAmounts {
            containers,
            init_containers,
        }
    }

    /// The amounts of the typed pod's containers.
    pub fn of(pod: &Pod) -> AppAmounts {
        let of_list = |list: Option<&Vec<Container>>| {
            let mut amounts = ListAmounts::default();
            for (at, container) in list.into_iter().flatten().enumerate() {
                amounts.record(at, ContainerAmounts::of(container.resources.as_ref()));
            }
            amounts
        };
        let spec = pod.spec.as_ref();
        AppAmounts {
            containers: of_list(spec.map(|spec| &spec.containers)),
            init_containers: of_list(spec.and_then(|spec| spec.init_containers.as_ref())),
        }
    }
}

/// A pod with its containers' amounts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodView<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// Its containers' amounts.
    pub amounts: &'a AppAmounts,
}

impl<'a> PodView<'a> {
    /// The pod's spec.
    pub fn spec(self) -> Option<&'a PodSpec> {
        self.pod.spec.as_ref()
    }

    /// `spec.containers`, each with its amounts.
    pub fn containers(self) -> impl Iterator<Item = (&'a Container, &'a ContainerAmounts)> {
        let list = self.pod.spec.iter().flat_map(|spec| spec.containers.iter());
        paired(list, &self.amounts.containers)
    }

    /// `spec.initContainers`, each with its amounts.
    pub fn init_containers(self) -> impl Iterator<Item = (&'a Container, &'a ContainerAmounts)> {
        let list = self
            .pod
            .spec
            .iter()
            .flat_map(|spec| spec.init_containers.iter().flatten());
        paired(list, &self.amounts.init_containers)
    }

    /// [`PodView::containers`] without a container of ours left in the pod.
    pub fn app_containers(self) -> impl Iterator<Item = (&'a Container, &'a ContainerAmounts)> {
        self.containers().filter(is_app)
    }

    /// [`PodView::init_containers`] without a container of ours left in the pod.
    pub fn app_init_containers(self) -> impl Iterator<Item = (&'a Container, &'a ContainerAmounts)> {
        self.init_containers().filter(is_app)
    }
}

/// Whether the container is the app's, not one the engine injects.
fn is_app((container, _): &(&Container, &ContainerAmounts)) -> bool {
    !crate::decision::is_injected_container(&container.name)
}

fn paired<'a>(
    list: impl Iterator<Item = &'a Container>,
    amounts: &'a ListAmounts,
) -> impl Iterator<Item = (&'a Container, &'a ContainerAmounts)> {
    list.enumerate().map(move |(at, container)| (container, amounts.at(at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_base_units_with_requests_defaulting_to_limits() {
        let pod: Pod = serde_json::from_value(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"memory": "bad", "nvidia.com/gpu": "1"}}},
                {"name": "c", "resources": {"limits": {"ephemeral-storage": "1Ki"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"hugepages-2Mi": "2Mi"}}}],
        }}))
        .unwrap();
        let amounts = AppAmounts::of(&pod);
        let view = PodView {
            pod: &pod,
            amounts: &amounts,
        };
        let found: Vec<_> = view.containers().map(|(c, a)| (c.name.as_str(), a.clone())).collect();
        let (a, b, c) = (&found[0].1, &found[1].1, &found[2].1);
        assert_eq!(a.request_or_limit(Resource::Cpu), Some(250));
        assert_eq!(a.limit(Resource::Cpu), Some(1000));
        assert_eq!(a.request_or_limit(Resource::Memory), Some(1 << 30));
        assert_eq!(a.on_side(Resource::EphemeralStorage, Side::Request), 0);
        assert!(a.declares_cpu_or_memory());
        assert_eq!(
            b.request_or_limit(Resource::Memory),
            None,
            "an invalid quantity counts as unset"
        );
        assert!(
            b.declares_cpu_or_memory(),
            "the key counts even when its value does not parse"
        );
        assert_eq!(c.limit(Resource::EphemeralStorage), Some(1024));
        assert!(!c.declares_cpu_or_memory());
        let (init, init_amounts) = view.init_containers().next().unwrap();
        assert_eq!(init.name, "i");
        assert_eq!(init_amounts, &ContainerAmounts::default());
    }

    #[test]
    fn set_replaces_and_clear_forgets_a_side() {
        let mut amounts = ContainerAmounts::default();
        amounts.set(Side::Request, Resource::Cpu, "1");
        amounts.set(Side::Request, Resource::Cpu, "2");
        assert_eq!(amounts.request_or_limit(Resource::Cpu), Some(2000));
        amounts.set(Side::Limit, Resource::Cpu, "3");
        amounts.clear(Side::Request);
        assert_eq!(amounts.request_or_limit(Resource::Cpu), Some(3000));
        assert_eq!(amounts.limit(Resource::Cpu), Some(3000));
    }

    #[test]
    fn a_container_without_amounts_reads_as_none() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "a"}]}})).unwrap();
        let amounts = AppAmounts::default();
        let view = PodView {
            pod: &pod,
            amounts: &amounts,
        };
        let (_, found) = view.containers().next().unwrap();
        assert_eq!(found, &ContainerAmounts::default());
    }

    #[test]
    fn a_list_holds_the_containers_up_to_the_last_that_sets_amounts() {
        let mut set = ContainerAmounts::default();
        set.set(Side::Limit, Resource::Memory, "1Mi");
        let mut list = ListAmounts::default();
        list.record(0, ContainerAmounts::default());
        assert_eq!(list, ListAmounts::default());
        list.record(2, set.clone());
        list.record(3, ContainerAmounts::default());
        assert_eq!(list.0.len(), 3);
        assert_eq!(list.at(0), &ContainerAmounts::default());
        assert_eq!(list.at(2), &set);
        assert_eq!(list.at(7), &ContainerAmounts::default());
        list.record(2, ContainerAmounts::default());
        assert_eq!(list.at(2), &ContainerAmounts::default());
    }
}
