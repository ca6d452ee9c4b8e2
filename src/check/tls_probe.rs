//! Dialling the injector as the API server does: a TLS handshake that trusts only the
//! registration's caBundle and checks the certificate for the registration's name, and a
//! plain-HTTP `GET /readyz` on the admin port.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long one connection attempt may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest `/readyz` body read.
const READYZ_BODY_LIMIT: usize = 64 * 1024;

/// Connects to `address` and checks that the certificate it presents for `server_name`
/// chains to `ca_pem` alone; `Ok` says what verified.
pub(crate) async fn verify_serving_certificate(
    address: &str,
    server_name: &str,
    ca_pem: &[u8],
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<_, _>>()
            .map_err(|error| format!("the caBundle is not PEM certificates: {error}"))?;
    if certificates.is_empty() {
        return Err("the caBundle holds no certificate".into());
    }
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "none of the caBundle's {ignored} certificates can be used as a CA"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS set-up: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|error| format!("{server_name:?} is not a TLS server name: {error}"))?;
    let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connecting to {address} timed out after {DIAL_TIMEOUT:?}"))?
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    let connector = TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(DIAL_TIMEOUT, connector.connect(name, stream)).await {
        Err(_) => Err(format!(
            "the TLS handshake with {address} timed out after {DIAL_TIMEOUT:?}"
        )),
        Ok(Ok(_)) => Ok(format!(
            "the certificate {address} presents for {server_name} verifies against the caBundle"
        )),
        Ok(Err(error)) => match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            // The server's certificate is checked before the client's is asked for, so a server
            // that then wants one (--client-ca) still verified.
            Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => Ok(format!(
                "the certificate {address} presents for {server_name} verifies against the caBundle \
                 (the server then asks for a client certificate)"
            )),
            Some(rustls::Error::InvalidCertificate(reason)) => Err(format!(
                "the certificate {address} presents for {server_name} does not verify against the caBundle: {reason:?}"
            )),
            _ => Err(format!("the TLS handshake with {address} failed: {error}")),
        },
    }
}

/// `GET url` over plain HTTP (the admin port): the status and the first line of the body.
pub(crate) async fn get_plain_http(url: &str) -> Result<(u16, String), String> {
    let uri: axum::http::Uri = url.parse().map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?}: only http:// is read (the admin port is plain HTTP)"));
    }
    let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?;
    let address = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(&address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("HTTP handshake with {address}: {error}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header("host", address.as_str())
        .body(Body::empty())
        .map_err(|error| format!("GET {url}: {error}"))?;
    let response = tokio::time::timeout(DIAL_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| format!("GET {url} timed out"))?
        .map_err(|error| format!("GET {url}: {error}"))?;
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(Body::new(response.into_body()), READYZ_BODY_LIMIT)
        .await
        .map_err(|error| format!("GET {url}: reading the body: {error}"))?;
    let text = String::from_utf8_lossy(&body);
    Ok((status, text.lines().next().unwrap_or_default().trim().to_string()))
}
