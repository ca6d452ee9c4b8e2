//! Large reviews go to the blocking pool while small ones go on: every answer is right.

use std::time::Duration;

use serde_json::Value;
use sidecar_injector::server::options::ServeOptions;

use crate::common::{apply_and_check, container, pod_review};
use crate::fixture::{Client, Setup, send};
use crate::pods;

/// Checks a 200 answer for `uid` whose patch, applied to `pod`, adds the proxy.
fn assert_injected(status: u16, body: &[u8], uid: &str, pod: &Value) {
    assert_eq!(status, 200, "{uid}: {}", String::from_utf8_lossy(body));
    let response: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{uid}: not JSON: {e}"));
    assert_eq!(response["response"]["uid"], uid);
    assert_eq!(response["response"]["allowed"], true, "{uid}: {response}");
    let injected = apply_and_check(pod, &response);
    assert!(
        container(&injected, "istio-proxy").is_some(),
        "{uid}: no istio-proxy after the patch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_review_and_small_ones_at_once_are_all_answered_right() {
    let setup = Setup {
        options: ServeOptions {
            blocking_permits: 1,
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let addr = server.webhook;

    let large_pod = pods::sized(1024 * 1024);
    let large_review = serde_json::to_vec(&pod_review("large", pods::NAMESPACE, &large_pod)).unwrap();
    assert!(large_review.len() > ServeOptions::default().blocking_threshold_bytes);
    let large = tokio::spawn({
        let client = client.clone();
        let pod = large_pod.clone();
        async move {
            let answer = client.post(addr, "/inject", large_review).await.unwrap();
            assert_injected(answer.status, &answer.body, "large", &pod);
        }
    });

    // Two keep-alive connections of small reviews, sent while the large one is in flight.
    let small = (0..2).map(|connection| {
        let client = client.clone();
        tokio::spawn(async move {
            let tls = client.connect(addr).await.unwrap();
            let (mut sender, driver) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(driver);
            let pod = pods::typical();
            for i in 0..20 {
                let uid = format!("small-{connection}-{i}");
                let body = serde_json::to_vec(&pod_review(&uid, pods::NAMESPACE, &pod)).unwrap();
                let answer = send(&mut sender, "/inject", body).await.unwrap();
                assert_injected(answer.status, &answer.body, &uid, &pod);
            }
        })
    });
    let small: Vec<_> = small.collect();
    tokio::time::timeout(Duration::from_secs(60), async {
        large.await.unwrap();
        for connection in small {
            connection.await.unwrap();
        }
    })
    .await
    .expect("every review answered within 60 s");

    assert_eq!(
        server.metric("sidecar_injector_blocking_reviews_total"),
        1.0,
        "only the large review goes to the blocking pool"
    );
    server.stop().await;
}
