//! Scenarios 28 and 29: `istio.source: cluster`. An injector runs deploy/config.yaml (whose
//! `istio.source` is `cluster`) against an Istio namespace of its own, where the istiod
//! chart's ConfigMaps are created from the rendered fixtures (`tests/fixtures/istio-install/`)
//! with the revision, tag, proxy CPU request and proxy log level changed. It serves that
//! revision only (deploy/'s `istio.io/rev` webhooks, retargeted), so no other scenario's pods
//! reach it.
//!
//! 28: the pod created after the ConfigMaps are read carries their image, CPU request and log
//! level; after the values ConfigMap changes, pods are created until one carries the new
//! settings (at most 10 s; every pod on the way has the old or the new ones, nothing else),
//! and the next pod keeps them. The injector is never restarted.
//!
//! 29: a values ConfigMap that is not JSON is counted in
//! `sidecar_injector_istio_config_failures_total`, and pods are still admitted, with the last
//! good settings; a good ConfigMap after it is taken into use again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sidecar_injector::config::UserConfig;

use crate::check::{Context, Outcome, ensure, eventually};
use crate::deploy::{self, REVISION_LABEL};
use crate::harness::Harness;
use crate::injector::RunningInjector;
use crate::pods::{PROXY, container, test_pod};

/// Times the installed Istio's ConfigMaps were taken into use.
const RELOADS: &str = "sidecar_injector_istio_config_reloads_total";
/// Installed Istio ConfigMaps refused.
const FAILURES: &str = "sidecar_injector_istio_config_failures_total";
/// How long the injector may take to see a changed ConfigMap.
const PICKUP_LIMIT: Duration = Duration::from_secs(10);
const PICKUP_PAUSE: Duration = Duration::from_millis(50);

/// The settings the values ConfigMap is given, and what a pod shows of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    pub(super) tag: &'static str,
    pub(super) cpu: &'static str,
    pub(super) log_level: &'static str,
}

pub(super) const FIRST: Settings = Settings {
    tag: "1.28.0-e2e-one",
    cpu: "150m",
    log_level: "info",
};
pub(super) const SECOND: Settings = Settings {
    tag: "1.28.0-e2e-two",
    cpu: "175m",
    log_level: "debug",
};
const THIRD: Settings = Settings {
    tag: "1.28.0-e2e-three",
    cpu: "125m",
    log_level: "error",
};

/// One injector reading one Istio namespace for one revision.
pub(super) struct Installed<'h> {
    harness: &'h Harness,
    pub(super) istio_namespace: String,
    pub(super) app_namespace: String,
    revision: String,
    configuration: String,
    pub(super) injector: RunningInjector,
}

pub async fn change_applies_to_next_pod(harness: &Harness) -> Outcome {
    let installed = Installed::start(harness, "e2e-installed").await?;
    let result = async {
        let first = installed.settings_of(&installed.create("first").await?)?;
        ensure!(first == FIRST, "the first pod has {first:?}, expected {FIRST:?}");
        installed.write_values(Some(SECOND)).await?;
        let (before, picked_up) = installed.until_settings(SECOND, FIRST).await?;
        let next = installed.settings_of(&installed.create("settled").await?)?;
        ensure!(next == SECOND, "the pod after the first changed one has {next:?}");
        Ok(format!(
            "installed values read: image tag {}, proxy CPU request {}, --proxyLogLevel={}; values \
             changed: {before} pods still old, new settings after {} ms, next pod new too, no restart",
            FIRST.tag,
            FIRST.cpu,
            FIRST.log_level,
            picked_up.as_millis()
        ))
    }
    .await;
    installed.finish(result).await
}

pub async fn bad_configmap_keeps_last_good(harness: &Harness) -> Outcome {
    let installed = Installed::start(harness, "e2e-installed-bad").await?;
    let result = async {
        let failures = installed.injector.counter(FAILURES).await?;
        installed.write_values(None).await?;
        eventually("the broken values ConfigMap is counted", || async {
            match installed.injector.counter(FAILURES).await? {
                n if n > failures => Ok(()),
                n => Err(format!("{FAILURES} is {n}")),
            }
        })
        .await?;
        let kept = installed.settings_of(&installed.create("after-broken").await?)?;
        ensure!(
            kept == FIRST,
            "after the broken ConfigMap a pod has {kept:?}, expected the last good {FIRST:?}"
        );
        installed.write_values(Some(THIRD)).await?;
        let (before, picked_up) = installed.until_settings(THIRD, FIRST).await?;
        Ok(format!(
            "values ConfigMap made invalid JSON: counted in {FAILURES}, next pod admitted with the last \
             good settings (tag {}); fixed: {before} pods old, new settings after {} ms",
            FIRST.tag,
            picked_up.as_millis()
        ))
    }
    .await;
    installed.finish(result).await
}

// === impl Installed ===

impl<'h> Installed<'h> {
    /// Creates the Istio namespace with the chart's ConfigMaps for `revision` (values
    /// [`FIRST`]), the app namespace, and the injector, registered for that revision.
    async fn start(harness: &'h Harness, revision: &str) -> Result<Installed<'h>, String> {
        Self::start_with_client(harness, revision, harness.cluster.client().clone()).await
    }

    /// Like [`Installed::start`], with the injector's watches and writes made through
    /// `client` (the namespaces and ConfigMaps are created with the harness's).
    pub(super) async fn start_with_client(
        harness: &'h Harness,
        revision: &str,
        client: kube::Client,
    ) -> Result<Installed<'h>, String> {
        let istio_namespace = format!("{revision}-istio");
        let app_namespace = format!("{revision}-apps");
        harness.cluster.create_namespace(&istio_namespace, &[]).await?;
        harness
            .cluster
            .create_namespace(&app_namespace, &[(REVISION_LABEL, revision)])
            .await?;
        create_chart_configmaps(harness, &istio_namespace, revision, FIRST).await?;

        let text =
            std::fs::read_to_string(deploy::deploy_dir().join("config.yaml")).context("reading deploy/config.yaml")?;
        let shipped = UserConfig::from_yaml(&text, "deploy/config.yaml").map_err(|e| e.to_string())?;
        ensure!(
            shipped.config.istio.source == sidecar_injector::config::IstioSource::Cluster,
            "deploy/config.yaml does not set istio.source: cluster"
        );
        // The namespace and revision this scenario owns; every other key as shipped.
        let user = UserConfig::from_yaml(
            &text
                .replace("  namespace: istio-system", &format!("  namespace: {istio_namespace}"))
                .replace("\nrevision: default\n", &format!("\nrevision: {revision}\n")),
            "deploy/config.yaml",
        )
        .map_err(|e| e.to_string())?;
        ensure!(
            user.config.istio.namespace == istio_namespace && user.config.revision == revision,
            "could not point deploy/config.yaml at {istio_namespace} and revision {revision}"
        );
        let injector = RunningInjector::start_with_user_config(user, client).await?;
        eventually("the injector reads the installed Istio", || async {
            match injector.counter(RELOADS).await? {
                0 => Err(format!("{RELOADS} is 0")),
                _ => Ok(()),
            }
        })
        .await?;
        let configuration = format!("sidecar-injector-{revision}");
        let registration = deploy::for_revision(
            deploy::pointed_at(deploy::webhook_configuration()?, &injector.url(), injector.ca_pem()),
            &configuration,
            revision,
        );
        harness.cluster.register_webhook(&registration).await?;
        Ok(Installed {
            harness,
            istio_namespace,
            app_namespace,
            revision: revision.to_string(),
            configuration,
            injector,
        })
    }

    /// Replaces the values ConfigMap's `values` with `settings`, or with text that is not JSON.
    async fn write_values(&self, settings: Option<Settings>) -> Result<(), String> {
        let values = match settings {
            Some(settings) => values_json(&self.revision, Some(settings))?,
            None => "{\"global\": {\"tag\": ".to_string(),
        };
        let name = format!("istio-sidecar-injector-{}", self.revision);
        Api::<ConfigMap>::namespaced(self.harness.cluster.client().clone(), &self.istio_namespace)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"values": values}})),
            )
            .await
            .map(drop)
            .context(format!("updating ConfigMap {name}"))
    }

    pub(super) async fn create(&self, name: &str) -> Result<Pod, String> {
        self.harness
            .cluster
            .create_pod(&self.app_namespace, &test_pod(name, &[], &[]))
            .await
            .context(format!("creating pod {name}"))
    }

    /// Creates pods until one has `new`; each one before it must have `old`.
    async fn until_settings(&self, new: Settings, old: Settings) -> Result<(usize, Duration), String> {
        let changed = Instant::now();
        let mut before = 0;
        loop {
            let pod = self.create(&format!("{}-{before}", new.log_level)).await?;
            let seen = self.settings_of(&pod)?;
            if seen == new {
                return Ok((before, changed.elapsed()));
            }
            ensure!(
                seen == old,
                "a pod after the change has {seen:?}: neither {old:?} nor {new:?}"
            );
            before += 1;
            ensure!(
                changed.elapsed() < PICKUP_LIMIT,
                "{before} pods created in {} s after the change still have the old settings",
                PICKUP_LIMIT.as_secs()
            );
            tokio::time::sleep(PICKUP_PAUSE).await;
        }
    }

    /// The tag, CPU request and log level of the stored pod's proxy.
    pub(super) fn settings_of(&self, pod: &Pod) -> Result<Settings, String> {
        let proxy = container(pod, PROXY).ok_or_else(|| format!("no {PROXY} in {:?}", pod.metadata.name))?;
        // All of one: partly one, partly another (a torn swap) matches none.
        [FIRST, SECOND, THIRD]
            .into_iter()
            .find(|settings| matches(proxy, settings))
            .ok_or_else(|| describe(proxy))
    }

    /// Unregisters and stops the injector whatever `result` is.
    pub(super) async fn finish(self, result: Outcome) -> Outcome {
        let unregistered = self.harness.cluster.unregister_webhook(&self.configuration).await;
        let stopped = self.injector.stop().await;
        let message = result?;
        unregistered?;
        stopped?;
        Ok(message)
    }
}

/// Whether the proxy has exactly `settings`.
pub(super) fn matches(proxy: &Container, settings: &Settings) -> bool {
    let image = proxy.image.as_deref().unwrap_or_default();
    let cpu = proxy
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("cpu"))
        .map(|q| q.0.as_str());
    let level = format!("--proxyLogLevel={}", settings.log_level);
    image == format!("registry.istio.io/testing/proxyv2:{}", settings.tag)
        && cpu == Some(settings.cpu)
        && proxy.args.iter().flatten().any(|arg| *arg == level)
}

pub(super) fn describe(proxy: &Container) -> String {
    format!(
        "proxy has image {:?}, requests {:?}, args {:?}: none of the settings written",
        proxy.image,
        proxy.resources.as_ref().and_then(|r| r.requests.as_ref()),
        proxy.args
    )
}

/// The chart's two ConfigMaps for `revision` in `namespace`, from the rendered default
/// fixtures with `settings` written into the values.
pub(super) async fn create_chart_configmaps(
    harness: &Harness,
    namespace: &str,
    revision: &str,
    settings: Settings,
) -> Result<(), String> {
    let configmaps = Api::<ConfigMap>::namespaced(harness.cluster.client().clone(), namespace);
    let injector_data = BTreeMap::from([
        ("values".to_string(), values_json(revision, Some(settings))?),
        ("config".to_string(), fixture("default.config.yaml")?),
    ]);
    let mesh_data = BTreeMap::from([("mesh".to_string(), fixture("default.mesh.yaml")?)]);
    for (name, data) in [
        (format!("istio-sidecar-injector-{revision}"), injector_data),
        (format!("istio-{revision}"), mesh_data),
    ] {
        let configmap = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        };
        configmaps
            .create(&PostParams::default(), &configmap)
            .await
            .context(format!("creating ConfigMap {name}"))?;
    }
    Ok(())
}

/// A rendered fixture of the chart's ConfigMaps.
pub(super) fn fixture(name: &str) -> Result<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/istio-install")
        .join(name);
    std::fs::read_to_string(&path).context(format!("reading {}", path.display()))
}

/// The chart's default values with the revision and `settings` written in.
pub(super) fn values_json(revision: &str, settings: Option<Settings>) -> Result<String, String> {
    let mut values: Value =
        serde_json::from_str(&fixture("default.values.json")?).context("parsing the values fixture")?;
    values["revision"] = json!(revision);
    if let Some(settings) = settings {
        values["global"]["tag"] = json!(settings.tag);
        values["global"]["proxy"]["resources"]["requests"]["cpu"] = json!(settings.cpu);
        values["global"]["proxy"]["logLevel"] = json!(settings.log_level);
    }
    serde_json::to_string_pretty(&values).context("writing values")
}
