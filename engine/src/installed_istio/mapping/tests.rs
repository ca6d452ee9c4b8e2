//! The mapping, checked against ConfigMaps rendered by Istio's own installer from the
//! pinned chart (`tests/fixtures/istio-install/`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::json;

use super::super::InstalledIstio;
use crate::config::layers::{SettingSource, UserConfig};
use crate::config::{CniProvider, InjectConfig, InjectionPolicy};

fn fixture(name: &str, suffix: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/istio-install")
        .join(format!("{name}.{suffix}"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn rendered(name: &str) -> InstalledIstio {
    let injector = BTreeMap::from([
        ("values".to_string(), fixture(name, "values.json")),
        ("config".to_string(), fixture(name, "config.yaml")),
    ]);
    let mesh = BTreeMap::from([("mesh".to_string(), fixture(name, "mesh.yaml"))]);
    InstalledIstio::parse("istio-sidecar-injector", Some(&injector), "istio", Some(&mesh)).unwrap()
}

fn composed(name: &str, user: &UserConfig) -> (InjectConfig, crate::config::Provenance) {
    let settings = rendered(name).settings().unwrap();
    let (config, provenance) = user.compose(&settings).unwrap();
    config.clone().compile().unwrap();
    (config, provenance)
}

#[test]
fn the_charts_defaults_give_the_built_in_defaults_but_for_the_image() {
    let (config, provenance) = composed("default", &UserConfig::defaults());
    let builtin = InjectConfig::default();
    // The chart's default hub and tag are a development build's.
    assert_eq!(config.proxy_image, "registry.istio.io/testing/proxyv2:latest");
    assert_eq!(config.proxy_init_image, config.proxy_image);
    // 2000m and 1024Mi: the same amounts as the built-in 2 and 1Gi.
    let units = |config: &InjectConfig| -> Vec<Option<i64>> {
        let tuning = config.clone().compile().unwrap().tuning;
        tuning.defaults.iter().map(|q| q.map(|q| q.units())).collect()
    };
    assert_eq!(units(&config), units(&builtin));
    assert_eq!(config.proxy_log_level, builtin.proxy_log_level);
    assert_eq!(config.proxy_component_log_level, builtin.proxy_component_log_level);
    assert_eq!(config.agent_log_level, builtin.agent_log_level);
    assert_eq!(config.policy, InjectionPolicy::Enabled);
    assert_eq!(config.ca_address, builtin.ca_address);
    assert_eq!(config.trust_domain, "cluster.local");
    assert_eq!(config.mesh_id, "cluster.local");
    assert_eq!(config.cluster_id, builtin.cluster_id);
    assert_eq!(config.revision, "default");
    assert_eq!(config.status_port, 15020);
    assert_eq!(config.include_outbound_ip_ranges, "*");
    assert!(!config.cni_enabled);
    assert!(!config.hold_application_until_proxy_starts);
    assert_eq!(
        config.native_sidecars, builtin.native_sidecars,
        "ENABLE_NATIVE_SIDECARS unset is auto"
    );
    assert_eq!(
        config.mesh_default_config.get("discoveryAddress"),
        Some(&json!("istiod.istio-system.svc:15012"))
    );
    assert_eq!(
        provenance.source_of("resources").to_string(),
        "istio values global.proxy.resources"
    );
    assert_eq!(
        provenance.source_of("trustDomain").to_string(),
        "mesh config trustDomain"
    );
    assert_eq!(provenance.source_of("policy").to_string(), "istio config policy");
}

#[test]
fn every_changed_chart_value_reaches_its_config_key() {
    let (config, provenance) = composed("canary", &UserConfig::defaults());
    assert_eq!(config.proxy_image, "registry.example.test/mesh/proxyv2:1.28.1");
    assert_eq!(config.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(config.resources.requests.cpu.as_deref(), Some("250m"));
    assert_eq!(config.resources.requests.memory.as_deref(), Some("256Mi"));
    assert_eq!(config.resources.limits.cpu.as_deref(), Some("1"));
    assert_eq!(config.resources.limits.memory.as_deref(), Some("512Mi"));
    assert_eq!(config.proxy_log_level, "debug");
    assert_eq!(config.proxy_component_log_level, "misc:info");
    assert_eq!(config.agent_log_level, "default:debug");
    assert!(config.hold_application_until_proxy_starts);
    assert_eq!(
        provenance.source_of("holdApplicationUntilProxyStarts").to_string(),
        "mesh config defaultConfig.holdApplicationUntilProxyStarts"
    );
    assert_eq!(config.include_outbound_ip_ranges, "10.0.0.0/8");
    assert_eq!(config.exclude_inbound_ports, "8081");
    assert_eq!(config.status_port, 15021);
    assert_eq!(config.policy, InjectionPolicy::Disabled);
    assert_eq!(config.never_inject_selector.len(), 1);
    let compiled = config.clone().compile().unwrap();
    assert!(compiled.never_injects(&BTreeMap::from([("legacy".to_string(), "true".to_string())])));
    assert_eq!(config.trust_domain, "example.org");
    assert_eq!(config.mesh_id, "mesh1");
    assert_eq!(config.cluster_id, "east");
    assert_eq!(config.network, "net1");
    assert_eq!(config.revision, "canary");
    assert_eq!(config.ca_address, "istiod-canary.istio-system.svc:15012");
    assert!(!config.native_sidecars, "ENABLE_NATIVE_SIDECARS=false");
    assert!(config.cni_enabled);
    assert_eq!(config.cni_provider, CniProvider::Multus);
    assert!(!config.rewrite_app_probes);
    assert!(!config.enable_prometheus_merge);
    assert_eq!(
        config.mesh_default_config.get("discoveryAddress"),
        Some(&json!("istiod-canary.istio-system.svc:15012"))
    );
    assert_eq!(
        config.mesh_default_config["proxyMetadata"],
        json!({"ISTIO_META_DNS_CAPTURE": "true"})
    );
    assert_eq!(
        provenance.source_of("proxyImage").to_string(),
        "istio values global.hub, global.tag, global.proxy.image"
    );
}

#[test]
fn the_files_own_keys_override_the_installed_istio() {
    let user = UserConfig::from_yaml("proxyLogLevel: error\nnativeSidecars: true\n", "c.yaml").unwrap();
    let (config, provenance) = composed("canary", &user);
    assert_eq!(config.proxy_log_level, "error");
    assert!(config.native_sidecars);
    assert_eq!(provenance.source_of("nativeSidecars"), &SettingSource::Config);
    assert_eq!(config.proxy_component_log_level, "misc:info");
}

#[test]
fn image_types_and_full_image_names_follow_istiod() {
    let values = json!({"global": {"hub": "h", "tag": "1.28.0-distroless", "variant": "debug",
        "proxy": {"image": "proxyv2"}, "proxy_init": {"image": "r.example/init:1"}}});
    let installed = InstalledIstio {
        values: Some(values),
        ..InstalledIstio::default()
    };
    let settings = installed.settings().unwrap();
    let image = |key: &str| settings.iter().find(|s| s.key == key).map(|s| s.value.clone());
    assert_eq!(image("proxyImage"), Some(json!("h/proxyv2:1.28.0-debug")));
    assert_eq!(image("proxyInitImage"), Some(json!("r.example/init:1")));
    let mesh_type = InstalledIstio {
        values: Some(json!({"global": {"hub": "h", "tag": "1", "proxy": {"image": "proxyv2"}}})),
        mesh: Some(json!({"defaultConfig": {"image": {"imageType": "distroless"}}})),
        ..InstalledIstio::default()
    };
    let settings = mesh_type.settings().unwrap();
    assert_eq!(
        settings.iter().find(|s| s.key == "proxyImage").map(|s| s.value.clone()),
        Some(json!("h/proxyv2:1-distroless"))
    );
}

#[test]
fn a_configmap_that_does_not_parse_is_named() {
    let bad = BTreeMap::from([("values".to_string(), "{not json".to_string())]);
    let error = InstalledIstio::parse("istio-sidecar-injector", Some(&bad), "istio", None).unwrap_err();
    assert_eq!(error.configmap, "istio-sidecar-injector");
    assert_eq!(error.key, "values");
    let bad_mesh = BTreeMap::from([("mesh".to_string(), "- a\n- b\n".to_string())]);
    let error = InstalledIstio::parse("istio-sidecar-injector", None, "istio", Some(&bad_mesh)).unwrap_err();
    assert!(error.to_string().contains("ConfigMap istio key mesh"), "{error}");
    let bad_policy = BTreeMap::from([("config".to_string(), "policy: sometimes\n".to_string())]);
    let error = InstalledIstio::parse("istio-sidecar-injector", Some(&bad_policy), "istio", None)
        .unwrap()
        .settings()
        .unwrap_err();
    assert!(error.message.contains("sometimes"), "{error}");
}

#[test]
fn a_bad_installed_value_is_refused_naming_where_it_was_read() {
    let installed = InstalledIstio {
        values: Some(json!({"global": {"proxy": {"logLevel": "chatty"}}})),
        ..InstalledIstio::default()
    };
    let error = crate::Injector::compose(&UserConfig::defaults(), &installed.settings().unwrap()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("proxyLogLevel")
            && message.contains("chatty")
            && message.contains("istio values global.proxy.logLevel"),
        "{message}"
    );
}
