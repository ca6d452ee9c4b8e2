//! Certificates for the webhook: a private CA and a serving certificate signed by it.
//!
//! The API server must trust the webhook's certificate through the `caBundle` of the
//! MutatingWebhookConfiguration, and must reach it by the Service's DNS name. This module
//! makes both with rcgen, for the `certs` command and for `serve`'s self-signed start.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A CA and a serving certificate with its key, all PEM.
#[derive(Debug, Clone)]
pub struct CertBundle {
    /// The CA certificate, to go in `caBundle`.
    pub ca_pem: String,
    /// The CA's private key, kept to sign later certificates.
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

// === impl CertBundle ===

impl CertBundle {
    /// Makes a new CA and a serving certificate valid for `hosts` (DNS names or IP addresses).
    pub fn generate(hosts: &[String]) -> Result<Self, CertError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.distinguished_name = name("sidecar-injector CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        params.distinguished_name = name(hosts.first().map(String::as_str).unwrap_or("sidecar-injector"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(CertBundle {
            ca_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The DNS names a Service `service` in `namespace` is reached by.
    pub fn service_hosts(service: &str, namespace: &str) -> Vec<String> {
        vec![
            service.to_string(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ]
    }

    /// The CA as the base64 string the `caBundle` field takes.
    pub fn ca_bundle(&self) -> String {
        base64_simd::STANDARD.encode_to_string(self.ca_pem.as_bytes())
    }

    /// Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` into `dir`, creating it.
    pub fn write_to(&self, dir: &Path) -> Result<(), CertError> {
        let write_error = |path: &Path| {
            let path = path.display().to_string();
            move |source| CertError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        for (file, contents) in [
            ("ca.crt", &self.ca_pem),
            ("ca.key", &self.ca_key_pem),
            ("tls.crt", &self.cert_pem),
            ("tls.key", &self.key_pem),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, contents).map_err(write_error(&path))?;
        }
        Ok(())
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_certificate_names_all_service_forms() {
        let hosts = CertBundle::service_hosts("injector", "mesh");
        assert_eq!(
            hosts,
            [
                "injector",
                "injector.mesh",
                "injector.mesh.svc",
                "injector.mesh.svc.cluster.local"
            ]
        );
        let bundle = CertBundle::generate(&hosts).unwrap();
        assert!(bundle.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(bundle.key_pem.contains("PRIVATE KEY"));
        // Decoded with the other base64 implementation than the one that encoded it.
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle.ca_bundle())
            .unwrap();
        assert_eq!(decoded, bundle.ca_pem.as_bytes());
    }
}
