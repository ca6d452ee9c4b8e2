//! TLS settings for the webhook port: rustls with the ring provider, TLS 1.2+, ALPN h2 and http/1.1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::{CertBundle, CertError};

/// Why TLS credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: String,
    },
    /// The key file holds no PEM private key.
    #[error("{path} holds no PEM private key")]
    NoKey {
        /// The file.
        path: String,
    },
    /// rustls refused the pair (e.g. the key does not match).
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    /// Self-signed generation failed.
    #[error(transparent)]
    Generate(#[from] CertError),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses a PEM certificate chain and private key.
pub fn parse_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: (&str, &str),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: origin.0.into() });
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey { path: origin.1.into() })?;
    Ok((certs, key))
}

/// A rustls server config from PEM bytes.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8], origin: (&str, &str)) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = parse_pem(cert_pem, key_pem, origin)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files on disk.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Generate a CA and a certificate for localhost; write the CA to `ca_out`.
    SelfSigned {
        /// Where to write the CA certificate.
        ca_out: PathBuf,
    },
}

/// Loads or makes the credentials; returns the config and, for self-signed, the CA path.
pub fn load(source: &TlsSource) -> Result<(Arc<ServerConfig>, Option<PathBuf>), TlsError> {
    match source {
        TlsSource::Files { cert, key } => {
            let config = server_config(
                &read(cert)?,
                &read(key)?,
                (&cert.display().to_string(), &key.display().to_string()),
            )?;
            Ok((config, None))
        }
        TlsSource::SelfSigned { ca_out } => {
            let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
            let bundle = CertBundle::generate(&hosts)?;
            if let Some(parent) = ca_out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| CertError::Write {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            std::fs::write(ca_out, &bundle.ca_pem).map_err(|source| CertError::Write {
                path: ca_out.display().to_string(),
                source,
            })?;
            let config = server_config(
                bundle.cert_pem.as_bytes(),
                bundle.key_pem.as_bytes(),
                ("generated", "generated"),
            )?;
            Ok((config, Some(ca_out.clone())))
        }
    }
}
