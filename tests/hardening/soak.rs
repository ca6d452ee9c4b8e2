//! The soak: the real binary under steady load for `SOAK_SECONDS` (default 120). Ignored by
//! default; it reports requests, errors, the rate and RSS before and after, and fails on any
//! error or on RSS growing by more than a quarter after warm-up.
//!
//! ```sh
//! cargo build --release   # optional: SOAK_BINARY=target/release/sidecar-injector
//! cargo test --test hardening soak -- --ignored --nocapture
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::binary::Binary;
use crate::common::pod_review;
use crate::fixture::{Client, admin_get, bundle, eventually};

/// A pod that varies with `n`, so the engine takes several paths.
fn body(n: u64) -> Vec<u8> {
    let annotations = match n % 4 {
        0 => json!({}),
        1 => json!({"sidecar.istio.io/proxyCPU": "250m", "sidecar.istio.io/proxyMemoryLimit": "2Gi"}),
        2 => {
            json!({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8", "sidecar.istio.io/nativeSidecar": "true"})
        }
        _ => json!({"sidecar.istio.io/proxyCPU": "3"}),
    };
    let pod = json!({
        "metadata": {"name": format!("soak-{n}"), "labels": {"app": "soak"}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    });
    serde_json::to_vec(&pod_review(&format!("soak-{n}"), "apps", &pod)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs for minutes; see the module docs"]
async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let program: PathBuf = std::env::var_os("SOAK_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_sidecar-injector").into());
    let pki = bundle();
    let dir = std::env::temp_dir().join(format!("sidecar-injector-soak-{}", std::process::id()));
    pki.write_to(&dir).unwrap();
    let mut binary = Binary::start(&program, &dir, &["--drain-delay", "0s"]);
    let admin = binary.admin;
    eventually("binary ready", Duration::from_secs(30), || async {
        admin_get(admin, "/readyz").await.map(|(status, _)| status) == Ok(200)
    })
    .await;
    let rss_start = binary.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..6 {
        let h1 = Client::trusting(&[&pki.ca_pem]);
        let h2 = Client::new(&[&pki.ca_pem], None, &[b"h2"]);
        let (stop, counter, ok, errors, addr) = (
            stop.clone(),
            counter.clone(),
            ok.clone(),
            errors.clone(),
            binary.webhook,
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                // Workers 0-3 keep an HTTP/1.1 connection for 200 requests; 4 opens one per
                // request; 5 speaks HTTP/2.
                let result: Result<u64, String> = match worker {
                    4 => {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        match h1.post(addr, "/inject?timeout=10s", body(n)).await {
                            Ok(answer) if answer.status == 200 => Ok(1),
                            Ok(answer) => Err(format!("status {}", answer.status)),
                            Err(error) => Err(error),
                        }
                    }
                    5 => {
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        match h2.post_h2(addr, "/inject?timeout=10s", body(n)).await {
                            Ok(answer) if answer.status == 200 => Ok(1),
                            Ok(answer) => Err(format!("status {}", answer.status)),
                            Err(error) => Err(error),
                        }
                    }
                    _ => keep_alive(&h1, addr, &counter, &stop).await,
                };
                match result {
                    Ok(count) => ok.fetch_add(count, Ordering::SeqCst),
                    Err(error) => {
                        eprintln!("soak error: {error}");
                        errors.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    let started = Instant::now();
    let warm_up = Duration::from_secs(10.min(seconds / 4));
    tokio::time::sleep(warm_up).await;
    let rss_warm = binary.rss_kib();
    let mut samples = vec![rss_warm];
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(seconds).saturating_sub(started.elapsed())))
            .await;
        samples.push(binary.rss_kib());
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let took = started.elapsed();
    let rss_end = binary.rss_kib();
    let (ok, errors) = (ok.load(Ordering::SeqCst), errors.load(Ordering::SeqCst));
    eprintln!(
        "soak: {ok} requests in {:.0}s = {:.0}/s, {errors} errors; RSS {rss_start} KiB at start, {rss_warm} KiB after \
         {warm_up:?} warm-up, {rss_end} KiB at the end; samples (KiB): {samples:?}; binary {}",
        took.as_secs_f64(),
        ok as f64 / took.as_secs_f64(),
        program.display()
    );
    binary.signal("TERM");
    let status = binary.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(errors, 0);
    assert_eq!(status.code(), Some(0));
    assert!(
        rss_end <= rss_warm + rss_warm / 4,
        "RSS grew from {rss_warm} to {rss_end} KiB"
    );
}

/// Up to 200 requests on one HTTP/1.1 connection.
async fn keep_alive(
    client: &Client,
    addr: std::net::SocketAddr,
    counter: &AtomicU64,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let tls = client.connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut done = 0;
    while done < 200 && !stop.load(Ordering::SeqCst) {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let answer = crate::fixture::send(&mut sender, "/inject?timeout=10s", body(n)).await?;
        if answer.status != 200 {
            return Err(format!("status {}", answer.status));
        }
        done += 1;
    }
    Ok(done)
}
