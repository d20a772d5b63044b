//! Reading replication certificates: fingerprints, purposes, names and issuer signatures.
//!
//! The cluster listener calls [`parse_secondary_peer`] on the client certificate of every
//! handshake after rustls has checked the chain, to learn which secondary is calling and with
//! which serial, so the revocation list can be consulted.

use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// The suffix of every name in this scheme: `primary.<cluster_id>.coffer` and
/// `<secondary_id>.secondary.<cluster_id>.coffer`.
pub const NAME_SUFFIX: &str = "coffer";

/// Errors from reading or checking a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The bytes are not one DER X.509 certificate.
    #[error("invalid certificate: {reason}")]
    Malformed {
        /// The parser's reason.
        reason: String,
    },
    /// The certificate's signature does not verify with the CA's key.
    #[error("certificate is not signed by the replication CA with sha256 fingerprint {ca_sha256}")]
    NotIssuedByCa {
        /// The CA it was checked against.
        ca_sha256: String,
    },
    /// The extended key usage is not the one this role requires.
    #[error("certificate has extended key usage {found}, expected {expected} only")]
    WrongPurpose {
        /// The purpose the role requires.
        expected: Purpose,
        /// The purpose the certificate carries.
        found: Purpose,
    },
    /// The certificate lacks a DNS name it must carry.
    #[error("certificate does not name {name}")]
    MissingName {
        /// The expected DNS name.
        name: String,
    },
    /// The certificate names no secondary of this cluster.
    #[error("certificate names no secondary of cluster {cluster_id}")]
    NoSecondaryName {
        /// The cluster that was expected.
        cluster_id: String,
    },
}

/// A certificate's extended key usage, reduced to what replication distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `serverAuth` and nothing else: the primary's cluster certificate.
    ServerAuthOnly,
    /// `clientAuth` and nothing else: a secondary's certificate.
    ClientAuthOnly,
    /// Any other combination, including no extension at all (which permits every use).
    Other,
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Purpose::ServerAuthOnly => "serverAuth",
            Purpose::ClientAuthOnly => "clientAuth",
            Purpose::Other => "other than serverAuth or clientAuth alone",
        })
    }
}

/// The facts about a certificate that replication checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial number as lowercase hex without separators.
    pub serial: String,
    /// The extended key usage.
    pub purpose: Purpose,
    /// The DNS names in the subject alternative name extension.
    pub dns_names: Vec<String>,
    /// The raw subject public key (32 bytes for Ed25519).
    pub public_key: Vec<u8>,
}

/// The identity a secondary presents in its client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryPeer {
    /// The secondary id from the certificate's DNS name.
    pub secondary_id: String,
    /// The certificate serial as lowercase hex.
    pub serial: String,
}

/// Computes the SHA-256 fingerprint of DER bytes as lowercase hex, the form of `ca_sha256`.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Builds the DNS name the primary's cluster certificate carries and secondaries verify.
pub fn primary_dns_name(cluster_id: &str) -> String {
    format!("primary.{cluster_id}.{NAME_SUFFIX}")
}

/// Builds the DNS name a secondary's certificate carries.
pub fn secondary_dns_name(cluster_id: &str, secondary_id: &str) -> String {
    format!("{secondary_id}.secondary.{cluster_id}.{NAME_SUFFIX}")
}

/// Parses one DER certificate and extracts its serial, purpose, names and public key.
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo, CertError> {
    let cert = parse_x509(der)?;
    Ok(CertInfo {
        serial: hex::encode(cert.raw_serial()),
        purpose: purpose_of(&cert)?,
        dns_names: dns_names_of(&cert)?,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// Checks that `cert_der` is signed by the CA certificate `ca_der`.
pub fn verify_issued_by(cert_der: &[u8], ca_der: &[u8]) -> Result<(), CertError> {
    let cert = parse_x509(cert_der)?;
    let ca = parse_x509(ca_der)?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| CertError::NotIssuedByCa {
            ca_sha256: sha256_fingerprint(ca_der),
        })
}

/// Extracts the secondary id and serial from a peer's client certificate of `cluster_id`.
///
/// Rejects a certificate whose extended key usage is anything but `clientAuth`, so the
/// primary's own certificate cannot pose as a secondary. The chain is not checked here: the
/// caller verifies it first (rustls in the listener, [`verify_issued_by`] elsewhere).
pub fn parse_secondary_peer(der: &[u8], cluster_id: &str) -> Result<SecondaryPeer, CertError> {
    let info = parse_certificate(der)?;
    require_purpose(&info, Purpose::ClientAuthOnly)?;
    let secondary_id = info
        .dns_names
        .iter()
        .find_map(|name| secondary_id_from_name(name, cluster_id))
        .ok_or_else(|| CertError::NoSecondaryName {
            cluster_id: cluster_id.to_owned(),
        })?;
    Ok(SecondaryPeer {
        secondary_id,
        serial: info.serial,
    })
}

/// Fails unless the certificate carries the DNS name `name`.
pub fn require_dns_name(info: &CertInfo, name: &str) -> Result<(), CertError> {
    if info
        .dns_names
        .iter()
        .any(|dns| dns.eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err(CertError::MissingName {
            name: name.to_owned(),
        })
    }
}

/// Fails unless the certificate's purpose is `expected`.
pub fn require_purpose(info: &CertInfo, expected: Purpose) -> Result<(), CertError> {
    if info.purpose == expected {
        Ok(())
    } else {
        Err(CertError::WrongPurpose {
            expected,
            found: info.purpose,
        })
    }
}

fn secondary_id_from_name(name: &str, cluster_id: &str) -> Option<String> {
    let suffix = format!(".secondary.{cluster_id}.{NAME_SUFFIX}");
    let id = name.strip_suffix(&suffix)?;
    (!id.is_empty() && !id.contains('.')).then(|| id.to_owned())
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|error| CertError::Malformed {
        reason: error.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::Malformed {
            reason: format!("{} bytes follow the certificate", rest.len()),
        });
    }
    Ok(cert)
}

fn purpose_of(cert: &X509Certificate<'_>) -> Result<Purpose, CertError> {
    let extension = cert
        .extended_key_usage()
        .map_err(|error| CertError::Malformed {
            reason: format!("extended key usage: {error}"),
        })?;
    let Some(extension) = extension else {
        return Ok(Purpose::Other);
    };
    let eku = extension.value;
    let others = eku.any
        || eku.code_signing
        || eku.email_protection
        || eku.time_stamping
        || eku.ocsp_signing
        || !eku.other.is_empty();
    Ok(match (eku.server_auth, eku.client_auth, others) {
        (true, false, false) => Purpose::ServerAuthOnly,
        (false, true, false) => Purpose::ClientAuthOnly,
        _ => Purpose::Other,
    })
}

fn dns_names_of(cert: &X509Certificate<'_>) -> Result<Vec<String>, CertError> {
    let extension = cert
        .subject_alternative_name()
        .map_err(|error| CertError::Malformed {
            reason: format!("subject alternative name: {error}"),
        })?;
    let Some(extension) = extension else {
        return Ok(Vec::new());
    };
    let names = extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_sha256_hex() {
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secondary_name_parses_only_for_its_cluster() {
        let name = secondary_dns_name("c1", "east");
        assert_eq!(secondary_id_from_name(&name, "c1"), Some("east".to_owned()));
        assert_eq!(secondary_id_from_name(&name, "c2"), None);
        assert_eq!(
            secondary_id_from_name("a.b.secondary.c1.coffer", "c1"),
            None
        );
        assert_eq!(secondary_id_from_name(&primary_dns_name("c1"), "c1"), None);
    }

    #[test]
    fn garbage_is_malformed_certificate() {
        let result = parse_certificate(b"not a certificate");
        assert!(matches!(result, Err(CertError::Malformed { .. })));
    }
}
