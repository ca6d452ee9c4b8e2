//! TLS: 1.2 and 1.3 only, nothing answered in plaintext, ALPN h2 and http/1.1, and client
//! certificates required and verified with `--client-ca`.

use std::time::Duration;

use sidecar_injector::server::tls::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::{Client, ProjectedDir, Setup, assert_allowed, bundle, eventually, review_body};

/// A ClientHello without the supported_versions extension, as TLS 1.0-1.2 clients send it:
/// `version` 0x0302 is TLS 1.1, 0x0303 TLS 1.2. It offers ECDHE-ECDSA-AES128-GCM-SHA256 and
/// what that needs (groups, point formats, signature algorithms), so only the version differs.
fn legacy_client_hello(version: u16) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    body.extend([0x5a; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x02, 0xc0, 0x2b]); // one cipher suite
    body.extend([0x01, 0x00]); // null compression
    let extensions: Vec<u8> = [
        &[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17][..], // x25519, secp256r1
        &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00][..],                         // uncompressed points
        &[0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04][..], // ecdsa_p256_sha256, rsa_pss
    ]
    .concat();
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, (handshake.len() >> 8) as u8, handshake.len() as u8];
    record.extend(handshake);
    record
}

/// Everything the server sends until it closes (bounded).
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_accepted() {
    let setup = Setup::default();
    let ca = setup.bundle.ca_pem.clone();
    let server = setup.start().await;
    for (name, version) in [
        ("TLS 1.2", &rustls::version::TLS12),
        ("TLS 1.3", &rustls::version::TLS13),
    ] {
        let client = Client::with_versions(&[&ca], None, &[b"http/1.1"], &[version]);
        let answer = client.post(server.webhook, "/inject", review_body(name)).await.unwrap();
        assert_allowed(&answer, name);
    }
    // The same hand-made hello: answered with a ServerHello as TLS 1.2 ...
    let mut tls12 = TcpStream::connect(server.webhook).await.unwrap();
    tls12.write_all(&legacy_client_hello(0x0303)).await.unwrap();
    let mut head = [0u8; 6];
    tls12.read_exact(&mut head).await.unwrap();
    assert_eq!(
        (head[0], head[5]),
        (0x16, 0x02),
        "no ServerHello for TLS 1.2: {head:02x?}"
    );
    // ... and refused with a fatal alert as TLS 1.1, never a ServerHello.
    let mut tls11 = TcpStream::connect(server.webhook).await.unwrap();
    tls11.write_all(&legacy_client_hello(0x0302)).await.unwrap();
    let answer = read_until_closed(&mut tls11).await;
    eprintln!("TLS 1.1 ClientHello answered with {answer:02x?}");
    assert_eq!(answer.first(), Some(&0x15), "{answer:02x?}");
    // A fatal (2) protocol_version (70) alert.
    assert_eq!(answer.get(5..7), Some(&[2u8, 70][..]), "{answer:02x?}");
    server.stop().await;
}

#[tokio::test]
async fn plaintext_http_gets_no_http_answer() {
    let server = Setup::default().start().await;
    let mut plain = TcpStream::connect(server.webhook).await.unwrap();
    plain
        .write_all(b"POST /inject HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let answer = read_until_closed(&mut plain).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("HTTP/"), "plaintext answered: {text:?}");
    assert!(answer.len() < 16, "more than a TLS alert: {answer:02x?}");
    server.stop().await;
}

#[tokio::test]
async fn alpn_h2_and_http1_are_both_served() {
    let setup = Setup::default();
    let ca = setup.bundle.ca_pem.clone();
    let server = setup.start().await;
    let h2 = Client::new(&[&ca], None, &[b"h2", b"http/1.1"]);
    let tls = h2.connect(server.webhook).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    drop(tls);
    assert_allowed(
        &h2.post_h2(server.webhook, "/inject", review_body("h2")).await.unwrap(),
        "h2",
    );
    let http1 = Client::new(&[&ca], None, &[b"http/1.1"]);
    let tls = http1.connect(server.webhook).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(tls);
    assert_allowed(
        &http1.post(server.webhook, "/inject", review_body("h1")).await.unwrap(),
        "h1",
    );
    // No ALPN at all (some clients): HTTP/1.1.
    let none = Client::new(&[&ca], None, &[]);
    assert_allowed(
        &none.post(server.webhook, "/inject", review_body("none")).await.unwrap(),
        "none",
    );
    server.stop().await;
}

#[tokio::test]
async fn client_ca_requires_and_verifies_client_certificates() {
    let serving = bundle();
    let clients = bundle();
    let stranger = bundle();
    let dir = ProjectedDir::new(
        "mtls",
        &[
            ("tls.crt", serving.cert_pem.as_bytes()),
            ("tls.key", serving.key_pem.as_bytes()),
            ("client-ca.crt", clients.ca_pem.as_bytes()),
        ],
    );
    let files = TlsFiles {
        cert: dir.path("tls.crt"),
        key: dir.path("tls.key"),
        client_ca: Some(dir.path("client-ca.crt")),
    };
    let server = Setup {
        tls_files: Some((files, Duration::from_secs(60))),
        ..Setup::default()
    }
    .start()
    .await;
    let identity = Some((clients.cert_pem.as_str(), clients.key_pem.as_str()));
    let trusted = Client::new(&[&serving.ca_pem], identity, &[b"http/1.1"]);
    assert_allowed(
        &trusted
            .post(server.webhook, "/inject", review_body("h1"))
            .await
            .unwrap(),
        "h1",
    );
    let trusted_h2 = Client::new(&[&serving.ca_pem], identity, &[b"h2"]);
    assert_allowed(
        &trusted_h2
            .post_h2(server.webhook, "/inject", review_body("h2"))
            .await
            .unwrap(),
        "h2",
    );

    let anonymous = Client::trusting(&[&serving.ca_pem]);
    let refused = anonymous.post(server.webhook, "/inject", review_body("anon")).await;
    assert!(
        refused.is_err(),
        "a client without a certificate was answered: {refused:?}"
    );
    let other_ca = Client::new(
        &[&serving.ca_pem],
        Some((&stranger.cert_pem, &stranger.key_pem)),
        &[b"http/1.1"],
    );
    let refused = other_ca.post(server.webhook, "/inject", review_body("stranger")).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted: {refused:?}"
    );
    eventually("refusals counted", Duration::from_secs(5), || async {
        server.metric("sidecar_injector_tls_handshake_failures_total{reason=\"error\"}") >= 2.0
    })
    .await;
    assert_allowed(
        &trusted
            .post(server.webhook, "/inject", review_body("after"))
            .await
            .unwrap(),
        "after",
    );
    server.stop().await;
}
