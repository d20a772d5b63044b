//! TLS for the API listener: loading the PEM certificate chain and key into a rustls server
//! configuration on the node's crypto provider and clock.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::cluster::TlsCrypto;

/// An error loading a listener's TLS configuration. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("failed to read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        error: std::io::Error,
    },
    /// The file held no usable PEM item of the expected kind.
    #[error("invalid {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problem found in the file.
        reason: String,
    },
    /// rustls rejected the certificate and key.
    #[error("the certificate in {} and the key in {} do not form a usable pair: {error}", cert.display(), key.display())]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// The rustls error.
        error: rustls::Error,
    },
}

/// Builds the server configuration from PEM files on `crypto`'s provider and clock, offering
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    crypto: &TlsCrypto,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let rejected = |error| TlsError::Rejected {
        cert: cert_file.to_owned(),
        key: key_file.to_owned(),
        error,
    };
    let provider = Arc::clone(&crypto.provider);
    let mut config = ServerConfig::builder_with_details(provider, Arc::clone(&crypto.time))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<std::fs::File>, TlsError> {
    let file = std::fs::File::open(path).map_err(|error| TlsError::Read {
        path: path.to_owned(),
        error,
    })?;
    Ok(BufReader::new(file))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<_, _>>()
        .map_err(|error| invalid(format!("malformed PEM: {error}")))?;
    if certs.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|error| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("malformed PEM: {error}"),
        })?
        .ok_or_else(|| TlsError::Invalid {
            path: path.to_owned(),
            reason: "no PRIVATE KEY block found".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cert_file_is_named() {
        let error = server_config(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/k.pem"),
            &TlsCrypto::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }

    #[test]
    fn cert_file_without_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let error = server_config(&cert, &cert, &TlsCrypto::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("cert.pem"), "{error}");
        assert!(error.contains("no CERTIFICATE block"), "{error}");
    }
}
