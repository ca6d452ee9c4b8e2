//! Certificate rotation without restart: a kubelet-style `..data` swap under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sidecar_injector::server::tls::TlsFiles;

use crate::fixture::{Client, ProjectedDir, Setup, assert_allowed, bundle, der, eventually, review_body};

const POLL: Duration = Duration::from_millis(100);

/// The files of a `kubernetes.io/tls` Secret.
fn secret<'a>(cert: &'a str, key: &'a str) -> [(&'static str, &'a [u8]); 2] {
    [("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())]
}

fn tls_files(dir: &ProjectedDir) -> TlsFiles {
    TlsFiles {
        cert: dir.path("tls.crt"),
        key: dir.path("tls.key"),
        client_ca: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request() {
    let old = bundle();
    let new = bundle();
    let mut dir = ProjectedDir::new("rotate", &secret(&old.cert_pem, &old.key_pem));
    let server = Setup {
        tls_files: Some((tls_files(&dir), POLL)),
        ..Setup::default()
    }
    .start()
    .await;
    server.wait_ready().await;
    // Clients trust both CAs, as a caBundle does while it is being rotated.
    let client = Client::trusting(&[&old.ca_pem, &new.ca_pem]);
    assert_eq!(
        client.peer_certificate(server.webhook).await.unwrap(),
        der(&old.cert_pem)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (client, stop, ok, failed, addr) =
            (client.clone(), stop.clone(), ok.clone(), failed.clone(), server.webhook);
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let uid = format!("w{worker}-{n}");
                // Half the workers reconnect every time (a handshake per request), half
                // keep one connection open across the rotation.
                let result = if worker % 2 == 0 {
                    match client.post(addr, "/inject", review_body(&uid)).await {
                        Ok(answer) if answer.status == 200 => Ok(1),
                        Ok(answer) => Err(format!("status {} {}", answer.status, answer.text())),
                        Err(error) => Err(error),
                    }
                } else {
                    keep_alive_batch(&client, addr, &uid).await
                };
                match result {
                    Ok(count) => ok.fetch_add(count, Ordering::SeqCst),
                    Err(error) => {
                        eprintln!("{uid}: {error}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    eventually("load running", Duration::from_secs(20), || async {
        ok.load(Ordering::SeqCst) >= 100
    })
    .await;

    let before = ok.load(Ordering::SeqCst);
    let swapped = Instant::now();
    dir.update(&secret(&new.cert_pem, &new.key_pem));
    let took = eventually("new certificate presented", Duration::from_secs(20), || async {
        client.peer_certificate(server.webhook).await.ok() == Some(der(&new.cert_pem))
    })
    .await;
    // Keep the load going a little past the switch.
    let after_switch = ok.load(Ordering::SeqCst);
    eventually("load after the switch", Duration::from_secs(20), || async {
        ok.load(Ordering::SeqCst) >= after_switch + 150
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!(
        "rotation: {ok} requests ok ({} after the swap), {failed} failed; new certificate after {took:?} \
         (poll interval {POLL:?}, {:?} since the swap)",
        ok - before,
        swapped.elapsed()
    );
    assert_eq!(failed, 0, "requests failed during rotation");
    // Every new connection now presents the new certificate.
    for _ in 0..5 {
        assert_eq!(
            client.peer_certificate(server.webhook).await.unwrap(),
            der(&new.cert_pem)
        );
    }
    assert_eq!(server.metric("sidecar_injector_tls_reloads_total"), 1.0);
    assert_eq!(server.metric("sidecar_injector_tls_reload_failures_total"), 0.0);
    server.stop().await;
}

/// Three requests on one connection: how many were allowed, or the first failure.
async fn keep_alive_batch(client: &Client, addr: std::net::SocketAddr, uid: &str) -> Result<u64, String> {
    let tls = client.connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    for i in 0..3 {
        let uid = format!("{uid}-{i}");
        let answer = crate::fixture::send(&mut sender, "/inject", review_body(&uid)).await?;
        if answer.status != 200 {
            return Err(format!("status {} {}", answer.status, answer.text()));
        }
        assert_allowed(&answer, &uid);
    }
    Ok(3)
}

#[tokio::test]
async fn broken_pair_keeps_the_old_certificate() {
    let old = bundle();
    let new = bundle();
    let mut dir = ProjectedDir::new("broken-pair", &secret(&old.cert_pem, &old.key_pem));
    let server = Setup {
        tls_files: Some((tls_files(&dir), POLL)),
        ..Setup::default()
    }
    .start()
    .await;
    server.wait_ready().await;
    let client = Client::trusting(&[&old.ca_pem, &new.ca_pem]);

    // The new certificate with the old key: a pair caught half-updated.
    dir.update(&secret(&new.cert_pem, &old.key_pem));
    eventually("mismatch counted", Duration::from_secs(20), || async {
        server.metric("sidecar_injector_tls_reload_failures_total") == 1.0
    })
    .await;
    assert_eq!(
        client.peer_certificate(server.webhook).await.unwrap(),
        der(&old.cert_pem)
    );
    assert_allowed(
        &client.post(server.webhook, "/inject", review_body("a")).await.unwrap(),
        "a",
    );

    // A certificate cut off half-way.
    let half = &new.cert_pem[..new.cert_pem.len() / 2];
    dir.update(&secret(half, &new.key_pem));
    eventually("truncation counted", Duration::from_secs(20), || async {
        server.metric("sidecar_injector_tls_reload_failures_total") == 2.0
    })
    .await;
    assert_eq!(
        client.peer_certificate(server.webhook).await.unwrap(),
        der(&old.cert_pem)
    );

    // Failures are counted once, not on every poll.
    tokio::time::sleep(POLL * 5).await;
    assert_eq!(server.metric("sidecar_injector_tls_reload_failures_total"), 2.0);

    // The good pair arrives: served from the next poll on.
    dir.update(&secret(&new.cert_pem, &new.key_pem));
    eventually("new certificate presented", Duration::from_secs(20), || async {
        client.peer_certificate(server.webhook).await.ok() == Some(der(&new.cert_pem))
    })
    .await;
    assert_eq!(server.metric("sidecar_injector_tls_reloads_total"), 1.0);
    assert_allowed(
        &client.post(server.webhook, "/inject", review_body("b")).await.unwrap(),
        "b",
    );
    server.stop().await;
}
