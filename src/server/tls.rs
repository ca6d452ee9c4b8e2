//! TLS settings for the webhook port: rustls with the ring provider, TLS 1.2+, ALPN h2 and
//! http/1.1, and optionally client certificates verified against a CA (mTLS from the API
//! server).
//!
//! The settings live in a [`TlsHandle`] that each new connection reads, so
//! [`super::reload`] can swap in rotated credentials without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::certs::{CertBundle, CertError};

/// The TLS versions the webhook speaks: nothing older than 1.2.
pub const PROTOCOL_VERSIONS: [&rustls::SupportedProtocolVersion; 2] =
    [&rustls::version::TLS13, &rustls::version::TLS12];

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
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: String,
    },
    /// A PEM section is broken (cut short, bad base64, a stray header line).
    #[error("{path} is not valid PEM: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What the PEM reader found wrong.
        reason: String,
    },
    /// The client CA file holds no usable CA certificate.
    #[error("client CA {path} holds no usable certificate: {reason}")]
    ClientCa {
        /// The file.
        path: String,
        /// What rustls said.
        reason: String,
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

/// Every certificate in PEM bytes; a broken section is an error naming `path`.
fn certificates(pem_bytes: &[u8], path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(path, &error))
}

fn pem_error(path: &str, error: &pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.into(),
        reason: error.to_string(),
    }
}

/// Parses a PEM certificate chain and private key.
pub fn parse_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: (&str, &str),
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = certificates(cert_pem, origin.0)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: origin.0.into() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoKey { path: origin.1.into() },
        other => pem_error(origin.1, &other),
    })?;
    Ok((certs, key))
}

/// A rustls server config from PEM bytes, without client authentication.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8], origin: (&str, &str)) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_client_ca(cert_pem, key_pem, None, origin)
}

/// A rustls server config from PEM bytes. With `client_ca` (PEM bytes and the file name),
/// every client must present a certificate issued by that CA. The key must match the
/// certificate: a pair caught half-written is refused rather than served.
pub fn server_config_with_client_ca(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca: Option<(&[u8], &str)>,
    origin: (&str, &str),
) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = parse_pem(cert_pem, key_pem, origin)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&PROTOCOL_VERSIONS)?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((ca_pem, path)) => {
            let client_ca_error = |reason: String| TlsError::ClientCa {
                path: path.into(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca_pem) {
                let cert = cert.map_err(|error| client_ca_error(error.to_string()))?;
                roots.add(cert).map_err(|error| client_ca_error(error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(client_ca_error("no PEM certificate".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| client_ca_error(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS settings new connections use; cloning shares them, and [`TlsHandle::store`]
/// changes them for every later handshake (connections already open keep theirs).
#[derive(Debug, Clone)]
pub struct TlsHandle(Arc<ArcSwap<ServerConfig>>);

// === impl TlsHandle ===

impl TlsHandle {
    /// The settings for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }

    /// Replaces the settings for later handshakes.
    pub fn store(&self, config: Arc<ServerConfig>) {
        self.0.store(config);
    }
}

impl From<Arc<ServerConfig>> for TlsHandle {
    fn from(config: Arc<ServerConfig>) -> Self {
        TlsHandle(Arc::new(ArcSwap::new(config)))
    }
}

/// The certificate, key and optional client CA files, read together.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA that client certificates must chain to (PEM); `None` for no client auth.
    pub client_ca: Option<PathBuf>,
}

// === impl TlsFiles ===

impl TlsFiles {
    /// Every file, in a fixed order, for change polling.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone(), self.key.clone()];
        paths.extend(self.client_ca.clone());
        paths
    }

    /// Reads and checks the files now.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let contents = self
            .paths()
            .iter()
            .map(|path| read(path))
            .collect::<Result<Vec<_>, _>>()?;
        self.config_from(&contents)
    }

    /// Builds the settings from the files' bytes, in [`TlsFiles::paths`] order.
    pub fn config_from(&self, contents: &[Vec<u8>]) -> Result<Arc<ServerConfig>, TlsError> {
        let empty = Vec::new();
        let part = |index: usize| contents.get(index).unwrap_or(&empty);
        let client_ca_name = self.client_ca.as_ref().map(|path| path.display().to_string());
        let client_ca = client_ca_name.as_deref().map(|name| (part(2).as_slice(), name));
        server_config_with_client_ca(
            part(0),
            part(1),
            client_ca,
            (&self.cert.display().to_string(), &self.key.display().to_string()),
        )
    }
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
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            };
            Ok((files.load()?, None))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_key_is_refused() {
        let first = CertBundle::generate(&["a".to_string()]).unwrap();
        let second = CertBundle::generate(&["b".to_string()]).unwrap();
        let error = server_config(first.cert_pem.as_bytes(), second.key_pem.as_bytes(), ("c", "k")).unwrap_err();
        assert!(error.to_string().contains("invalid certificate or key"), "{error}");
        assert!(server_config(first.cert_pem.as_bytes(), first.key_pem.as_bytes(), ("c", "k")).is_ok());
    }

    #[test]
    fn half_written_certificate_is_refused() {
        let bundle = CertBundle::generate(&["a".to_string()]).unwrap();
        let half = &bundle.cert_pem.as_bytes()[..bundle.cert_pem.len() / 2];
        let error = server_config(half, bundle.key_pem.as_bytes(), ("tls.crt", "tls.key")).unwrap_err();
        assert!(error.to_string().starts_with("tls.crt is not valid PEM: "), "{error}");
    }

    #[test]
    fn missing_pieces_name_the_file() {
        let bundle = CertBundle::generate(&["a".to_string()]).unwrap();
        let no_cert = server_config(b"", bundle.key_pem.as_bytes(), ("tls.crt", "tls.key")).unwrap_err();
        assert_eq!(no_cert.to_string(), "tls.crt holds no PEM certificate");
        let cert_as_key = server_config(
            bundle.cert_pem.as_bytes(),
            bundle.cert_pem.as_bytes(),
            ("tls.crt", "tls.key"),
        )
        .unwrap_err();
        assert!(
            cert_as_key.to_string().starts_with("tls.key holds no PEM private key"),
            "{cert_as_key}"
        );
        let half_key = &bundle.key_pem.as_bytes()[..bundle.key_pem.len() / 2];
        let error = server_config(bundle.cert_pem.as_bytes(), half_key, ("tls.crt", "tls.key")).unwrap_err();
        assert!(error.to_string().starts_with("tls.key is not valid PEM: "), "{error}");
    }

    #[test]
    fn only_tls_1_2_and_1_3_are_offered() {
        let bundle = CertBundle::generate(&["a".to_string()]).unwrap();
        let config = server_config(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes(), ("c", "k")).unwrap();
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            [rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2]
        );
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn client_ca_without_certificates_is_refused() {
        let bundle = CertBundle::generate(&["a".to_string()]).unwrap();
        let error = server_config_with_client_ca(
            bundle.cert_pem.as_bytes(),
            bundle.key_pem.as_bytes(),
            Some((b"not pem", "ca.crt")),
            ("c", "k"),
        )
        .unwrap_err();
        assert!(error.to_string().contains("client CA ca.crt"), "{error}");
    }
}
