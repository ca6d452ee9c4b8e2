//! The parts of the sidecar that are the same for every pod, built and serialized once in
//! [`crate::Injector::new`] and spliced into each answer as they are.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::{InjectConfig, InterceptionMode};
use crate::sidecar::{VOLUME_NAMES, standard_volumes};

/// The compiled template.
#[derive(Debug, Clone)]
pub(crate) struct SidecarTemplate {
    /// Istio's nine volumes, serialized, with their names.
    pub volumes: Vec<(&'static str, Box<RawValue>)>,
    /// The mesh-wide ProxyConfig the config changes from Istio's defaults, under each pod's
    /// `proxy.istio.io/config` in `PROXY_CONFIG`.
    pub mesh_proxy_config: Map<String, Value>,
}

impl SidecarTemplate {
    /// Builds the template for `config`.
    pub(crate) fn compile(config: &InjectConfig) -> Self {
        let volumes = VOLUME_NAMES
            .into_iter()
            .zip(standard_volumes())
            .filter_map(|(name, volume)| Some((name, serde_json::value::to_raw_value(&volume).ok()?)))
            .collect();
        let mut mesh_proxy_config = config.mesh_default_config.clone();
        if config.interception_mode != InterceptionMode::Redirect {
            mesh_proxy_config.insert(
                "interceptionMode".into(),
                Value::from(config.interception_mode.as_str()),
            );
        }
        SidecarTemplate {
            volumes,
            mesh_proxy_config,
        }
    }
}

/// A volume to add: one of the template's, already serialized, or one built for this pod.
#[derive(Debug, Clone)]
pub(crate) enum VolumeItem<'t> {
    /// From the template.
    Compiled(&'t RawValue),
    /// Built for this pod (the mTLS certificate volume, the user's volumes).
    Built(Value),
}

impl Serialize for VolumeItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            VolumeItem::Compiled(raw) => raw.serialize(serializer),
            VolumeItem::Built(value) => value.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_volumes_serialize_as_built() {
        let template = SidecarTemplate::compile(&InjectConfig::default());
        let names: Vec<&str> = template.volumes.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, VOLUME_NAMES);
        for ((name, raw), built) in template.volumes.iter().zip(standard_volumes()) {
            let item = serde_json::to_value(VolumeItem::Compiled(raw)).unwrap();
            assert_eq!(item, built, "{name}");
            assert_eq!(item["name"], *name);
        }
        let tproxy = InjectConfig {
            interception_mode: InterceptionMode::Tproxy,
            ..InjectConfig::default()
        };
        assert_eq!(
            SidecarTemplate::compile(&tproxy).mesh_proxy_config["interceptionMode"],
            "TPROXY"
        );
    }
}
