//! TLS to participants: rustls on aws-lc-rs (the provider the AWS SDK and kube already use, so
//! `cargo tree -i ring` stays empty), trusting either the configured CA bundle alone (a private
//! CA, e.g. trust-manager's bundle) or the system's roots (`SSL_CERT_FILE` in the image).

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Where the trusted CAs come from.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// The system's roots.
    #[default]
    System,
    /// Only the CAs of this PEM bundle (its text).
    Bundle(String),
}

/// The CAs named by a CA file or PEM text (the file wins), else the system's roots.
pub fn trust(
    file: Option<&std::path::Path>,
    pem: Option<&str>,
    whose: &str,
) -> anyhow::Result<Trust> {
    Ok(match (file, pem) {
        (Some(path), _) => Trust::Bundle(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {whose} CA bundle {}", path.display()))?,
        ),
        (None, Some(pem)) => Trust::Bundle(pem.to_owned()),
        (None, None) => Trust::System,
    })
}

/// The client config every participant call uses (https URLs; plain http ignores it).
pub fn client_config(trust: &Trust) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    match trust {
        Trust::Bundle(pem) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .context("the participant CA bundle is not valid PEM")?;
            anyhow::ensure!(
                !certs.is_empty(),
                "the participant CA bundle holds no certificate"
            );
            for cert in certs {
                roots
                    .add(cert)
                    .context("a certificate of the participant CA bundle is not usable as a CA")?;
            }
        }
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable entries are skipped; an empty store only matters for https URLs.
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_must_hold_certificates() {
        let none = client_config(&Trust::Bundle(String::new())).unwrap_err();
        assert!(none.to_string().contains("no certificate"), "{none}");
        let garbage = client_config(&Trust::Bundle(
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into(),
        ));
        assert!(garbage.is_err());
    }
}
