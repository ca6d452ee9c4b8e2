//! Config reload: a changed `--config` applies to the next request; a bad one keeps the
//! last good config, and is logged and counted.

use std::time::Duration;

use serde_json::Value;
use sidecar_injector::config::InjectConfig;

use crate::fixture::{Client, ProjectedDir, Running, Setup, eventually, review_body};

const POLL: Duration = Duration::from_millis(100);

/// The proxy image the server injects now.
async fn injected_image(client: &Client, server: &Running, uid: &str) -> String {
    let answer = client.post(server.webhook, "/inject", review_body(uid)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let review = answer.json();
    let patch = review["response"]["patch"].as_str().expect("a patch");
    let patch: Value =
        serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::STANDARD, patch).unwrap())
            .unwrap();
    patch
        .as_array()
        .unwrap()
        .iter()
        // One container added, or (native sidecars, no init containers yet) the whole list.
        .flat_map(|op| match &op["value"] {
            Value::Array(containers) => containers.iter().collect::<Vec<_>>(),
            container => vec![container],
        })
        .filter_map(|container| container["image"].as_str())
        .find(|image| image.contains("proxyv2"))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_applies_good_files_and_keeps_the_last_good_one() {
    let v1 = "proxyImage: example.com/proxyv2:1\nproxyInitImage: example.com/proxyv2:1\n";
    let mut dir = ProjectedDir::new("config", &[("config.yaml", v1.as_bytes())]);
    let path = dir.path("config.yaml");
    let setup = Setup {
        config: InjectConfig::load(&path).unwrap(),
        config_file: Some((path, POLL)),
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    assert_eq!(injected_image(&client, &server, "a").await, "example.com/proxyv2:1");

    let v2 = "proxyImage: example.com/proxyv2:2\nproxyInitImage: example.com/proxyv2:2\nmaxBodyBytes: 2048\n";
    dir.update(&[("config.yaml", v2.as_bytes())]);
    let mut n = 0;
    eventually("new config in force", Duration::from_secs(20), || {
        n += 1;
        let uid = format!("v2-{n}");
        let (client, server) = (&client, &server);
        async move { injected_image(client, server, &uid).await == "example.com/proxyv2:2" }
    })
    .await;
    assert_eq!(server.metric("sidecar_injector_config_reloads_total"), 1.0);
    // The body limit follows the config too.
    let answer = client.post(server.webhook, "/inject", vec![b' '; 3000]).await.unwrap();
    assert_eq!(answer.status, 413);

    // Bad files: an unknown key, then a request above its limit, then not YAML.
    let bad = [
        "proxyImage: example.com/proxyv2:3\nproxyImag: typo\n",
        "resources:\n  requests:\n    cpu: '3'\n  limits:\n    cpu: '2'\n",
        ": : :\n\t- [",
    ];
    for (index, text) in bad.iter().enumerate() {
        dir.update(&[("config.yaml", text.as_bytes())]);
        eventually("bad config counted", Duration::from_secs(20), || async {
            server.metric("sidecar_injector_config_reload_failures_total") == (index + 1) as f64
        })
        .await;
        assert_eq!(
            injected_image(&client, &server, &format!("bad-{index}")).await,
            "example.com/proxyv2:2"
        );
    }
    // Counted once each, not on every poll.
    tokio::time::sleep(POLL * 5).await;
    assert_eq!(server.metric("sidecar_injector_config_reload_failures_total"), 3.0);
    assert_eq!(server.metric("sidecar_injector_config_reloads_total"), 1.0);
    server.stop().await;
}
