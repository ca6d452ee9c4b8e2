//! Graceful shutdown: `/readyz` turns 503 at once, the listener keeps accepting for the
//! drain delay, then in-flight requests finish and the process exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use sidecar_injector::server::options::ServeOptions;
use tokio::net::TcpStream;

use crate::binary::Binary;
use crate::fixture::{Client, Setup, SlowUpload, admin_get, assert_allowed, bundle, eventually, review_body};

const IN_FLIGHT: usize = 20;

/// Checks what each slow upload got back once its body was complete.
async fn finish_all(uploads: Vec<SlowUpload>) -> usize {
    let mut completed = 0;
    for (index, upload) in uploads.into_iter().enumerate() {
        let (status, body) = upload
            .finish()
            .await
            .unwrap_or_else(|e| panic!("in-flight request {index}: {e}"));
        assert_eq!(status, 200, "in-flight request {index}: {body}");
        let review: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert_eq!(review["response"]["uid"], format!("inflight-{index}"));
        assert_eq!(review["response"]["allowed"], true);
        completed += 1;
    }
    completed
}

async fn start_uploads(client: &Client, addr: SocketAddr) -> Vec<SlowUpload> {
    let mut uploads = Vec::new();
    for index in 0..IN_FLIGHT {
        let body = review_body(&format!("inflight-{index}"));
        uploads.push(SlowUpload::start(client, addr, "/inject", body).await.unwrap());
    }
    uploads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_at_shutdown_all_complete() {
    let setup = Setup {
        options: ServeOptions {
            drain_delay: Duration::from_secs(3),
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let mut server = setup.start().await;
    server.wait_ready().await;
    let uploads = start_uploads(&client, server.webhook).await;

    server.begin_shutdown();
    eventually("/readyz 503", Duration::from_secs(2), || async {
        admin_get(server.admin, "/readyz").await.map(|(status, _)| status) == Ok(503)
    })
    .await;
    // Still accepting during the drain delay; HTTP/1.1 clients are asked to reconnect.
    let late = client
        .post(server.webhook, "/inject", review_body("late"))
        .await
        .unwrap();
    assert_allowed(&late, "late");
    assert_eq!(late.headers["connection"], "close");

    eventually(
        "listener closed after the drain delay",
        Duration::from_secs(20),
        || async { TcpStream::connect(server.webhook).await.is_err() },
    )
    .await;
    assert!(!server.is_stopped(), "run returned with requests in flight");
    let completed = finish_all(uploads).await;
    eprintln!("shutdown: {IN_FLIGHT} requests in flight at shutdown, {completed} completed with 200");
    assert_eq!(completed, IN_FLIGHT);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let pki = bundle();
    let dir = std::env::temp_dir().join(format!("sidecar-injector-sigterm-{}", std::process::id()));
    pki.write_to(&dir).unwrap();
    let mut binary = Binary::start(
        env!("CARGO_BIN_EXE_sidecar-injector").as_ref(),
        &dir,
        &["--drain-delay", "2s"],
    );
    let admin = binary.admin;
    eventually("binary ready", Duration::from_secs(30), || async {
        admin_get(admin, "/readyz").await.map(|(status, _)| status) == Ok(200)
    })
    .await;
    let client = Client::trusting(&[&pki.ca_pem]);
    let uploads = start_uploads(&client, binary.webhook).await;

    binary.signal("TERM");
    eventually("/readyz 503 after SIGTERM", Duration::from_secs(2), || async {
        admin_get(admin, "/readyz").await.map(|(status, _)| status) == Ok(503)
    })
    .await;
    let webhook = binary.webhook;
    eventually(
        "listener closed after the drain delay",
        Duration::from_secs(20),
        || async { TcpStream::connect(webhook).await.is_err() },
    )
    .await;
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "exited with requests in flight"
    );
    let completed = finish_all(uploads).await;
    let status = binary.wait().await;
    eprintln!("SIGTERM: {IN_FLIGHT} requests in flight, {completed} completed; exit {status}");
    assert_eq!(status.code(), Some(0), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
