//! Limits and timeouts: a slow or greedy client is cut off while other requests go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};

use sidecar_injector::config::InjectConfig;
use sidecar_injector::server::options::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::{Client, Setup, SlowUpload, assert_allowed, eventually, review_body};

/// Reads until the peer closes; true when it did within `bound`.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, bound: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < bound {
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_headers_are_cut_off_while_others_are_served() {
    let setup = Setup {
        options: ServeOptions {
            header_read_timeout: Duration::from_millis(500),
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let mut loris = client.connect(server.webhook).await.unwrap();
    let addr = server.webhook;
    let served = tokio::spawn({
        let client = client.clone();
        async move {
            let mut served = 0;
            for i in 0..10 {
                let uid = format!("meanwhile-{i}");
                assert_allowed(&client.post(addr, "/inject", review_body(&uid)).await.unwrap(), &uid);
                served += 1;
            }
            served
        }
    });
    // A header, one byte every 100 ms, never finished: the server must hang up long before
    // the 20 s this would take.
    let head = b"POST /inject HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut cut_off = false;
    for byte in head {
        if loris.write_all(&[*byte]).await.is_err() || loris.flush().await.is_err() {
            cut_off = true;
            break;
        }
        if closed_within(&mut loris, Duration::from_millis(100)).await {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "a client trickling its headers was never disconnected");
    eprintln!("slow-loris headers cut off after {:?}", started.elapsed());
    assert_eq!(served.await.unwrap(), 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_tls_handshake_is_cut_off() {
    let setup = Setup {
        options: ServeOptions {
            handshake_timeout: Duration::from_millis(500),
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    // One client opens TCP and says nothing; another sends half a ClientHello.
    let mut silent = TcpStream::connect(server.webhook).await.unwrap();
    let mut partial = TcpStream::connect(server.webhook).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    assert_allowed(
        &client
            .post(server.webhook, "/inject", review_body("meanwhile"))
            .await
            .unwrap(),
        "meanwhile",
    );
    assert!(
        closed_within(&mut silent, Duration::from_secs(20)).await,
        "silent client kept"
    );
    assert!(
        closed_within(&mut partial, Duration::from_secs(20)).await,
        "half a ClientHello kept"
    );
    eventually("handshake timeouts counted", Duration::from_secs(5), || async {
        server.metric("sidecar_injector_tls_handshake_failures_total{reason=\"timeout\"}") == 2.0
    })
    .await;
    assert_allowed(
        &client
            .post(server.webhook, "/inject", review_body("after"))
            .await
            .unwrap(),
        "after",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let setup = Setup {
        options: ServeOptions {
            max_connections: 2,
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let first = TcpStream::connect(server.webhook).await.unwrap();
    let second = TcpStream::connect(server.webhook).await.unwrap();
    eventually("two connections held", Duration::from_secs(10), || async {
        server.metric("sidecar_injector_connections_open") == 2.0
    })
    .await;
    let addr = server.webhook;
    let third = tokio::spawn({
        let client = client.clone();
        async move { client.post(addr, "/inject", review_body("third")).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beyond max_connections 2"
    );
    assert_eq!(server.metric("sidecar_injector_connections_open"), 2.0);
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(20), third)
        .await
        .expect("the waiting client was never served")
        .unwrap()
        .unwrap();
    assert_allowed(&answer, "third");
    drop(second);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_follows_the_api_server_timeout() {
    let setup = Setup {
        options: ServeOptions {
            request_timeout: Duration::from_secs(15),
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    // A body that stops half-way: with ?timeout=1s the answer comes at 80 % of it, well
    // before the 15 s default.
    let started = Instant::now();
    let stalled = SlowUpload::start(&client, server.webhook, "/inject?timeout=1s", review_body("slow"))
        .await
        .unwrap();
    let (status, body) = stalled.read_response().await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("800ms"), "{body}");
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    assert_eq!(server.metric("sidecar_injector_request_timeouts_total"), 1.0);
    // A normal request with the same hint is answered normally.
    let answer = client
        .post(server.webhook, "/inject?timeout=1s", review_body("fast"))
        .await
        .unwrap();
    assert_allowed(&answer, "fast");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_deadline_without_a_hint_uses_the_default() {
    let setup = Setup {
        options: ServeOptions {
            request_timeout: Duration::from_millis(600),
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    let stalled = SlowUpload::start(&client, server.webhook, "/inject", review_body("slow"))
        .await
        .unwrap();
    let (status, body) = stalled.read_response().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("600ms"), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_with_or_without_a_length() {
    let setup = Setup {
        config: InjectConfig {
            max_body_bytes: 4096,
            ..InjectConfig::default()
        },
        ..Setup::default()
    };
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    // With Content-Length (hyper's client sets it for a full body).
    let answer = client.post(server.webhook, "/inject", vec![b' '; 5000]).await.unwrap();
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.text().contains("maxBodyBytes (4096 bytes)"), "{}", answer.text());
    // Chunked, with no length announced: cut off once it passes the limit.
    let mut tls = client.connect(server.webhook).await.unwrap();
    let head = "POST /inject HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..5 {
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        if tls.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // At the limit is fine (and still the server's normal answer for a bad body).
    let answer = client.post(server.webhook, "/inject", vec![b' '; 4096]).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_allowed(
        &client
            .post(server.webhook, "/inject", review_body("after"))
            .await
            .unwrap(),
        "after",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_busy_ones_are_not() {
    let setup = Setup {
        options: ServeOptions {
            header_read_timeout: Duration::from_millis(600),
            // One slot: the next connection is served only if closing the idle one freed it.
            max_connections: 1,
            ..ServeOptions::default()
        },
        ..Setup::default()
    };
    let client = Client::new(&[&setup.bundle.ca_pem], None, &[b"h2"]);
    let server = setup.start().await;
    let addr = server.webhook;

    // A client that finishes TLS and the HTTP/2 preface and then sends nothing.
    let tls = client.connect(addr).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let started = Instant::now();
    let idle = tokio::spawn(connection);
    // One request resets the idle clock; the connection stays open while it is used.
    let request = hyper::Request::post("https://127.0.0.1/inject")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(review_body(
            "h2-busy",
        ))))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let ended = tokio::time::timeout(Duration::from_secs(5), idle).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was still open after 5 s");
    let lasted = started.elapsed();
    eprintln!("idle HTTP/2 connection closed after {lasted:?}");
    assert!(
        lasted >= Duration::from_millis(600),
        "closed after {lasted:?}, before the 600 ms idle limit"
    );
    // The slot is free again: a new connection is served.
    let uid = "after-idle";
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.post_h2(addr, "/inject", review_body(uid)),
    )
    .await
    .expect("the idle connection's slot was never released");
    assert_allowed(&answer.unwrap(), uid);
    server.stop().await;
}

/// The 5 MiB body of the oversized-body tests: above the default 4 MiB limit.
const OVERSIZED: usize = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5_mib_body_over_http2_is_read_to_its_end_before_the_413() {
    let setup = Setup::default();
    let client = Client::new(&[&setup.bundle.ca_pem], None, &[b"h2"]);
    let server = setup.start().await;
    const PIECE: usize = 64 * 1024;
    for declared in [true, false] {
        // Counts the pieces the client got to send: all of them, when the server reads the
        // body to its end before answering (else the stream is reset under the client).
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let pieces = futures_util::stream::iter(0..OVERSIZED / PIECE).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![b' '; PIECE])))
        });
        let mut request = hyper::Request::post("https://127.0.0.1/inject").header("content-type", "application/json");
        if declared {
            request = request.header("content-length", OVERSIZED.to_string());
        }
        let request = request.body(StreamBody::new(pieces)).unwrap();
        let answer = client.send_h2(server.webhook, request).await.unwrap();
        assert_eq!(answer.status, 413, "declared {declared}: {}", answer.text());
        assert!(answer.text().contains("maxBodyBytes"), "{}", answer.text());
        assert_eq!(sent.load(Ordering::SeqCst), OVERSIZED / PIECE, "declared {declared}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_5_mib_over_http1_reads_the_413() {
    let setup = Setup::default();
    let client = Client::trusting(&[&setup.bundle.ca_pem]);
    let server = setup.start().await;
    for framing in [
        format!("content-length: {OVERSIZED}"),
        "transfer-encoding: chunked".to_string(),
    ] {
        let mut tls = client.connect(server.webhook).await.unwrap();
        let head =
            format!("POST /inject HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{framing}\r\n\r\n");
        tls.write_all(head.as_bytes()).await.unwrap();
        let chunked = framing.starts_with("transfer");
        let piece = vec![b' '; 64 * 1024];
        for _ in 0..OVERSIZED / piece.len() {
            let written = if chunked {
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(&piece);
                chunk.extend_from_slice(b"\r\n");
                tls.write_all(&chunk).await
            } else {
                tls.write_all(&piece).await
            };
            written
                .unwrap_or_else(|e| panic!("{framing}: the server stopped reading while the client was sending: {e}"));
        }
        if chunked {
            tls.write_all(b"0\r\n\r\n").await.unwrap();
        }
        tls.flush().await.unwrap();
        let mut raw = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut raw))
            .await
            .expect("an answer within 10 s")
            .unwrap_or_else(|e| panic!("{framing}: reading the answer: {e}"));
        let text = String::from_utf8_lossy(&raw[..read]);
        assert!(text.starts_with("HTTP/1.1 413"), "{framing}: {text}");
    }
    server.stop().await;
}
