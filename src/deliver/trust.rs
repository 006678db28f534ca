//! Which TLS certificates deliveries trust: the Mozilla roots, plus the CA certificates a user
//! names for endpoints behind a private CA (`whc serve --ca-cert FILE`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the extra CA certificates could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read or holds no PEM certificate.
    #[error("cannot read CA certificates from {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A certificate could not be added as a trust anchor.
    #[error("{} holds a certificate that cannot be trusted as a CA: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// CA certificates to trust beside the Mozilla roots, read from PEM files.
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    certs: Vec<(PathBuf, CertificateDer<'static>)>,
}

impl ExtraRoots {
    /// Reads every certificate of every file; a file without one is an error.
    pub fn load(paths: &[PathBuf]) -> Result<ExtraRoots, TrustError> {
        let mut certs = Vec::new();
        for path in paths {
            let read = |reason: String| TrustError::Read {
                path: path.clone(),
                reason,
            };
            let found = CertificateDer::pem_file_iter(path)
                .map_err(|e| read(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| read(e.to_string()))?;
            if found.is_empty() {
                return Err(read("no `BEGIN CERTIFICATE` block".into()));
            }
            certs.extend(found.into_iter().map(|c| (path.clone(), c)));
        }
        Ok(ExtraRoots { certs })
    }

    /// Whether there is nothing beyond the Mozilla roots.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The TLS client settings: the Mozilla roots and these.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TrustError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for (path, cert) in &self.certs {
            roots.add(cert.clone()).map_err(|e| invalid(path, e))?;
        }
        // ring named explicitly, as in `Client::new`.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(Path::new("(TLS settings)"), e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(config)
    }
}

fn invalid(path: &Path, e: rustls::Error) -> TrustError {
    TrustError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = ExtraRoots::load(std::slice::from_ref(&path)).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let missing = ExtraRoots::load(&[dir.path().join("missing.pem")]).unwrap_err();
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
    }

    #[test]
    fn no_extra_roots_is_the_mozilla_set() {
        let roots = ExtraRoots::default();
        assert!(roots.is_empty());
        assert!(roots.client_config().is_ok());
    }
}
