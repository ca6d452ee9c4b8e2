//! An unreachable API server never blocks admission, and a cache that never syncs does not
//! keep the injector unready for ever.

use std::time::{Duration, Instant};

use crate::fixture::{Client, Setup, admin_get, eventually, review_body};

/// A client for an API server at `addr`.
fn kube_client(addr: std::net::SocketAddr) -> kube::Client {
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

/// Admits one pod and checks it got the defaults and a fallback warning.
async fn admitted_with_fallback(client: &Client, webhook: std::net::SocketAddr, uid: &str) -> Duration {
    let started = Instant::now();
    let answer = client.post(webhook, "/inject", review_body(uid)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let review = answer.json();
    assert_eq!(review["response"]["allowed"], true, "{review}");
    assert!(review["response"]["patch"].is_string(), "not injected: {review}");
    let warnings = review["response"]["warnings"].to_string();
    assert!(warnings.contains("namespace defaults not applied"), "{warnings}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_api_server_falls_back_quickly() {
    // A port nothing listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let setup = Setup {
        cluster: Some((kube_client(closed), Duration::from_millis(500))),
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let took = admitted_with_fallback(&client, server.webhook, "refused").await;
    eprintln!("refused API server: admitted in {took:?}");
    assert!(took < Duration::from_secs(5), "admission took {took:?}");
    assert_eq!(
        server.metric("sidecar_injector_namespace_fallback_total{reason=\"api-error\"}"),
        1.0
    );
    // Never synced, but ready after the sync timeout, and says so.
    server.wait_ready().await;
    assert_eq!(server.metric("sidecar_injector_cache_synced"), 0.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_api_server_falls_back_within_the_lookup_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let setup = Setup {
        cluster: Some((kube_client(addr), Duration::from_secs(3600))),
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let took = admitted_with_fallback(&client, server.webhook, "silent").await;
    eprintln!("silent API server: admitted in {took:?}");
    assert!(took < Duration::from_secs(5), "admission took {took:?}");
    assert_eq!(
        server.metric("sidecar_injector_namespace_fallback_total{reason=\"timeout\"}"),
        1.0
    );
    // With an hour's sync timeout it stays unready meanwhile.
    assert_eq!(admin_get(server.admin, "/readyz").await.unwrap().0, 503);
    eventually("webhook still serving", Duration::from_secs(5), || async {
        client
            .post(server.webhook, "/inject", review_body("again"))
            .await
            .is_ok()
    })
    .await;
    server.stop().await;
    hold.abort();
}
