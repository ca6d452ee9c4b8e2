//! The six proxy resource fields (CPU, memory and ephemeral storage, each a request and
//! a limit) and per-field values and ranges, shared by config loading and resolution.

use std::fmt;

use crate::annotations::{
    PROXY_CPU, PROXY_CPU_LIMIT, PROXY_EPHEMERAL_STORAGE, PROXY_EPHEMERAL_STORAGE_LIMIT, PROXY_MEMORY,
    PROXY_MEMORY_LIMIT,
};
use crate::quantity::{Quantity, ResourceKind};

/// A resource the proxy is sized in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// CPU.
    Cpu,
    /// Memory.
    Memory,
    /// Ephemeral storage.
    EphemeralStorage,
}

impl Resource {
    /// All resources, in output order.
    pub const ALL: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::EphemeralStorage];

    /// The Kubernetes resource name.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
        }
    }

    /// The name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Resource::Cpu => "CPU",
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral storage",
        }
    }

    /// The unit it is held in.
    pub fn kind(self) -> ResourceKind {
        match self {
            Resource::Cpu => ResourceKind::Cpu,
            Resource::Memory | Resource::EphemeralStorage => ResourceKind::Memory,
        }
    }

    /// The resource with this Kubernetes name, if we size it.
    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|resource| resource.name() == name)
    }
}

/// Request or limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The request.
    Request,
    /// The limit.
    Limit,
}

/// One of the six fields, e.g. `cpu.limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldKey {
    /// The resource.
    pub resource: Resource,
    /// Request or limit.
    pub side: Side,
}

impl FieldKey {
    /// All six fields, in output order.
    pub const ALL: [FieldKey; 6] = [
        FieldKey::new(Resource::Cpu, Side::Request),
        FieldKey::new(Resource::Cpu, Side::Limit),
        FieldKey::new(Resource::Memory, Side::Request),
        FieldKey::new(Resource::Memory, Side::Limit),
        FieldKey::new(Resource::EphemeralStorage, Side::Request),
        FieldKey::new(Resource::EphemeralStorage, Side::Limit),
    ];

    /// A field.
    pub const fn new(resource: Resource, side: Side) -> Self {
        FieldKey { resource, side }
    }

    /// Position in [`FieldKey::ALL`].
    pub fn index(self) -> usize {
        let resource = match self.resource {
            Resource::Cpu => 0,
            Resource::Memory => 2,
            Resource::EphemeralStorage => 4,
        };
        resource + usize::from(self.side == Side::Limit)
    }

    /// The annotation that sets this field on a pod or namespace.
    pub fn annotation(self) -> &'static str {
        match (self.resource, self.side) {
            (Resource::Cpu, Side::Request) => PROXY_CPU,
            (Resource::Cpu, Side::Limit) => PROXY_CPU_LIMIT,
            (Resource::Memory, Side::Request) => PROXY_MEMORY,
            (Resource::Memory, Side::Limit) => PROXY_MEMORY_LIMIT,
            (Resource::EphemeralStorage, Side::Request) => PROXY_EPHEMERAL_STORAGE,
            (Resource::EphemeralStorage, Side::Limit) => PROXY_EPHEMERAL_STORAGE_LIMIT,
        }
    }

    /// The field with the same resource on the other side.
    pub fn other_side(self) -> FieldKey {
        let side = match self.side {
            Side::Request => Side::Limit,
            Side::Limit => Side::Request,
        };
        FieldKey::new(self.resource, side)
    }

    /// The key used in config and the provenance annotation, e.g. `cpu.limit`.
    pub fn name(self) -> &'static str {
        match (self.resource, self.side) {
            (Resource::Cpu, Side::Request) => "cpu.request",
            (Resource::Cpu, Side::Limit) => "cpu.limit",
            (Resource::Memory, Side::Request) => "memory.request",
            (Resource::Memory, Side::Limit) => "memory.limit",
            (Resource::EphemeralStorage, Side::Request) => "ephemeral-storage.request",
            (Resource::EphemeralStorage, Side::Limit) => "ephemeral-storage.limit",
        }
    }

    /// The field whose [`FieldKey::name`] is `text`.
    pub fn parse(text: &str) -> Option<FieldKey> {
        FieldKey::ALL.into_iter().find(|key| key.name() == text)
    }

    /// "CPU limit", for messages.
    pub fn describe(self) -> String {
        let side = match self.side {
            Side::Request => "request",
            Side::Limit => "limit",
        };
        format!("{} {side}", self.resource.label())
    }
}

impl fmt::Display for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value per field, as parsed from config.
pub type FieldValues = [Option<Quantity>; 6];

/// One end of a range and who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The value.
    pub value: Quantity,
    /// `cluster` or `namespace`.
    pub origin: &'static str,
}

/// A field's allowed range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Range {
    /// Smallest allowed value.
    pub min: Option<Bound>,
    /// Largest allowed value.
    pub max: Option<Bound>,
}

/// A range per field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldBounds {
    ranges: [Range; 6],
}

impl FieldBounds {
    /// The range of one field.
    pub fn range(&self, key: FieldKey) -> &Range {
        &self.ranges[key.index()]
    }

    /// The range of one field, to change.
    pub(crate) fn range_mut(&mut self, key: FieldKey) -> &mut Range {
        &mut self.ranges[key.index()]
    }

    /// Sets the range of one field.
    pub(crate) fn set_range(&mut self, key: FieldKey, range: Range) {
        self.ranges[key.index()] = range;
    }
}
