//! The replication CA: a self-signed Ed25519 CA that certifies the primary and each secondary.
//!
//! Every key comes from the caller's RNG and every date from `now`, so the same seed and time
//! give byte-identical certificates (Ed25519 signatures are deterministic). The CA's private key
//! belongs only in the primary's local state: the caller stores the serialised [`ReplicationCa`]
//! in `Partition::Local` through the barrier and never sends it anywhere.

use std::net::IpAddr;
use std::time::Duration;

use rand_core::CryptoRngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};

use super::cert::{self, CertError};
use super::keys::{PrivateKey, PublicKey, der_base64};
use crate::time::Timestamp;

/// How long the CA certificate is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// How far `not_before` is set back from `now`, so a peer whose clock is slightly behind still
/// accepts a certificate issued a moment ago.
pub const CLOCK_SKEW_BACKDATE: Duration = Duration::from_secs(60);

/// The maximum length of a cluster or secondary id: the limit of one DNS label.
pub const MAX_ID_LENGTH: usize = 63;

/// Errors from creating, loading or using the CA.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    /// The cluster id cannot be part of a DNS name.
    #[error(
        "invalid cluster id {cluster_id:?}: use 1 to 63 lowercase letters, digits and inner \
         hyphens"
    )]
    InvalidClusterId {
        /// The rejected id.
        cluster_id: String,
    },
    /// The secondary id cannot be part of a DNS name.
    #[error(
        "invalid secondary id {secondary_id:?}: use 1 to 63 letters, digits, '-' or '_', \
         starting and ending with a letter or digit"
    )]
    InvalidSecondaryId {
        /// The rejected id.
        secondary_id: String,
    },
    /// A cluster address has no usable host.
    #[error(
        "invalid cluster address {addr:?}: expected host:port, https://host:port or [ipv6]:port"
    )]
    InvalidClusterAddr {
        /// The rejected address.
        addr: String,
    },
    /// A stored CA certificate does not belong to the stored key.
    #[error("stored replication CA certificate does not match its private key")]
    KeyMismatch,
    /// A stored CA certificate is unreadable.
    #[error("stored replication CA: {0}")]
    Certificate(#[from] CertError),
    /// rcgen rejected the certificate parameters.
    #[error("certificate generation failed: {reason}")]
    Generation {
        /// rcgen's message.
        reason: String,
    },
}

/// The replication CA with its private key.
///
/// Serialises with the DER and the key as base64; loading checks that they belong together.
/// `Debug` prints the cluster id and fingerprint only.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredCa", into = "StoredCa")]
pub struct ReplicationCa {
    cluster_id: String,
    cert_der: Vec<u8>,
    key: PrivateKey,
    not_after: Timestamp,
}

/// A certificate the CA issued, with its serial and, when the CA generated the key, the key.
///
/// `Debug` prints the serial and fingerprint only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// The certificate in DER.
    #[serde(with = "der_base64")]
    pub cert_der: Vec<u8>,
    /// The serial number as lowercase hex.
    pub serial: String,
    /// The private key, absent when the subject supplied its own public key.
    pub key: Option<PrivateKey>,
}

impl ReplicationCa {
    /// Generates a CA for `cluster_id` with a fresh key, valid from 60 s before `now` for ten
    /// years.
    pub fn generate(
        rng: &mut dyn CryptoRngCore,
        now: Timestamp,
        cluster_id: &str,
    ) -> Result<ReplicationCa, CaError> {
        validate_cluster_id(cluster_id)?;
        let key = PrivateKey::generate(rng);
        let serial = random_serial(rng);
        let not_after = now.saturating_add(CA_VALIDITY);
        let params = ca_params(cluster_id, &serial, now, not_after);
        let key_pair = key.rcgen_key_pair();
        let cert = params.self_signed(&*key_pair).map_err(generation_error)?;
        Ok(ReplicationCa {
            cluster_id: cluster_id.to_owned(),
            cert_der: cert.der().to_vec(),
            key,
            not_after,
        })
    }

    /// The cluster id this CA serves.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The CA certificate in DER, which secondaries receive in their bundle.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate's SHA-256 fingerprint as lowercase hex: the `ca_sha256` claim.
    pub fn ca_sha256(&self) -> String {
        cert::sha256_fingerprint(&self.cert_der)
    }

    /// Issues the primary's cluster certificate for server authentication only.
    ///
    /// The certificate names the host of each of `cluster_addrs` (IP or DNS) and
    /// `primary.<cluster_id>.coffer`, the name secondaries verify against.
    pub fn issue_primary_cert(
        &self,
        rng: &mut dyn CryptoRngCore,
        now: Timestamp,
        cluster_addrs: &[&str],
    ) -> Result<IssuedCert, CaError> {
        let mut names = vec![dns_san(&cert::primary_dns_name(&self.cluster_id))?];
        for addr in cluster_addrs {
            let name = addr_san(addr)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let common_name = format!("coffer-replication-primary {}", self.cluster_id);
        let purpose = ExtendedKeyUsagePurpose::ServerAuth;
        let key = PrivateKey::generate(rng);
        let public = key.public_key();
        let subject = Subject {
            common_name,
            names,
            purpose,
        };
        self.issue(rng, now, subject, &public, Some(key))
    }

    /// Issues a client certificate and a fresh key for `secondary_id`.
    pub fn issue_secondary_cert(
        &self,
        rng: &mut dyn CryptoRngCore,
        now: Timestamp,
        secondary_id: &str,
    ) -> Result<IssuedCert, CaError> {
        validate_secondary_id(secondary_id)?;
        let key = PrivateKey::generate(rng);
        let public = key.public_key();
        let subject = self.secondary_subject(secondary_id)?;
        self.issue(rng, now, subject, &public, Some(key))
    }

    /// Certifies a public key the secondary generated itself; the result contains no private key.
    pub fn certify_secondary_key(
        &self,
        rng: &mut dyn CryptoRngCore,
        now: Timestamp,
        secondary_id: &str,
        public_key: &PublicKey,
    ) -> Result<IssuedCert, CaError> {
        validate_secondary_id(secondary_id)?;
        let subject = self.secondary_subject(secondary_id)?;
        self.issue(rng, now, subject, public_key, None)
    }

    fn secondary_subject(&self, secondary_id: &str) -> Result<Subject, CaError> {
        let name = cert::secondary_dns_name(&self.cluster_id, secondary_id);
        Ok(Subject {
            common_name: format!("coffer-replication-secondary {secondary_id}"),
            names: vec![dns_san(&name)?],
            purpose: ExtendedKeyUsagePurpose::ClientAuth,
        })
    }

    fn issue(
        &self,
        rng: &mut dyn CryptoRngCore,
        now: Timestamp,
        subject: Subject,
        public_key: &PublicKey,
        key: Option<PrivateKey>,
    ) -> Result<IssuedCert, CaError> {
        let serial = random_serial(rng);
        let params = leaf_params(subject, &serial, now, self.not_after);
        let ca_key = self.key.rcgen_key_pair();
        let issuer = Issuer::from_ca_cert_der(&self.cert_der.as_slice().into(), &*ca_key)
            .map_err(generation_error)?;
        let cert = params
            .signed_by(public_key, &issuer)
            .map_err(generation_error)?;
        Ok(IssuedCert {
            cert_der: cert.der().to_vec(),
            serial: hex::encode(serial),
            key,
        })
    }
}

impl std::fmt::Debug for ReplicationCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationCa")
            .field("cluster_id", &self.cluster_id)
            .field("ca_sha256", &self.ca_sha256())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("sha256", &cert::sha256_fingerprint(&self.cert_der))
            .field("has_key", &self.key.is_some())
            .finish()
    }
}

/// The stored form of [`ReplicationCa`].
#[derive(Serialize, Deserialize)]
struct StoredCa {
    cluster_id: String,
    #[serde(with = "der_base64")]
    cert_der: Vec<u8>,
    key: PrivateKey,
    not_after: Timestamp,
}

impl TryFrom<StoredCa> for ReplicationCa {
    type Error = CaError;

    fn try_from(stored: StoredCa) -> Result<ReplicationCa, CaError> {
        validate_cluster_id(&stored.cluster_id)?;
        let info = cert::parse_certificate(&stored.cert_der)?;
        if info.public_key != stored.key.public_key().as_bytes() {
            return Err(CaError::KeyMismatch);
        }
        Ok(ReplicationCa {
            cluster_id: stored.cluster_id,
            cert_der: stored.cert_der,
            key: stored.key,
            not_after: stored.not_after,
        })
    }
}

impl From<ReplicationCa> for StoredCa {
    fn from(ca: ReplicationCa) -> StoredCa {
        StoredCa {
            cluster_id: ca.cluster_id,
            cert_der: ca.cert_der,
            key: ca.key,
            not_after: ca.not_after,
        }
    }
}

/// Checks that a cluster id can be a DNS label: lowercase letters, digits and inner hyphens.
pub fn validate_cluster_id(cluster_id: &str) -> Result<(), CaError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if is_label(cluster_id, allowed) {
        Ok(())
    } else {
        Err(CaError::InvalidClusterId {
            cluster_id: cluster_id.to_owned(),
        })
    }
}

/// Checks that a secondary id can be a DNS label: letters, digits, '-' and '_'.
pub fn validate_secondary_id(secondary_id: &str) -> Result<(), CaError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if is_label(secondary_id, allowed) {
        Ok(())
    } else {
        Err(CaError::InvalidSecondaryId {
            secondary_id: secondary_id.to_owned(),
        })
    }
}

fn is_label(value: &str, allowed: impl Fn(char) -> bool) -> bool {
    let edges_ok = value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric());
    value.len() <= MAX_ID_LENGTH && edges_ok && value.chars().all(allowed)
}

/// The subject fields of one issued certificate.
struct Subject {
    common_name: String,
    names: Vec<SanType>,
    purpose: ExtendedKeyUsagePurpose,
}

fn ca_params(
    cluster_id: &str,
    serial: &[u8],
    now: Timestamp,
    not_after: Timestamp,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&format!("coffer-replication-ca {cluster_id}"));
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = backdated(now);
    params.not_after = offset_datetime(not_after);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params(
    subject: Subject,
    serial: &[u8],
    now: Timestamp,
    not_after: Timestamp,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&subject.common_name);
    params.subject_alt_names = subject.names;
    params.serial_number = Some(SerialNumber::from_slice(serial));
    params.not_before = backdated(now);
    params.not_after = offset_datetime(not_after);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![subject.purpose];
    params.use_authority_key_identifier_extension = true;
    params
}

fn common_name(value: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, value);
    name
}

/// 16 random bytes with the top bit clear (serials are positive) and the next bit set (so DER
/// keeps all 16 bytes and the hex serial reads back unchanged).
fn random_serial(rng: &mut dyn CryptoRngCore) -> [u8; 16] {
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40;
    serial
}

fn backdated(now: Timestamp) -> time::OffsetDateTime {
    let secs = now.as_secs().saturating_sub(CLOCK_SKEW_BACKDATE.as_secs());
    offset_datetime(Timestamp::from_secs(secs))
}

/// Whole seconds, because X.509 times carry no fractions.
fn offset_datetime(at: Timestamp) -> time::OffsetDateTime {
    let secs = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn dns_san(name: &str) -> Result<SanType, CaError> {
    let name = name.to_owned().try_into().map_err(generation_error)?;
    Ok(SanType::DnsName(name))
}

/// Converts the host of a cluster address to a subject alternative name.
fn addr_san(addr: &str) -> Result<SanType, CaError> {
    let invalid = || CaError::InvalidClusterAddr {
        addr: addr.to_owned(),
    };
    let host = addr_host(addr).ok_or_else(invalid)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns_ok = host
        .split('.')
        .all(|label| is_label(label, |c| c.is_ascii_alphanumeric() || c == '-'));
    if !dns_ok {
        return Err(invalid());
    }
    dns_san(host)
}

fn addr_host(addr: &str) -> Option<&str> {
    let without_scheme = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let authority = without_scheme.split('/').next()?;
    if authority.parse::<IpAddr>().is_ok() {
        return Some(authority);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split_once(']').map(|(host, _)| host);
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    (!host.is_empty()).then_some(host)
}

fn generation_error(error: impl std::fmt::Display) -> CaError {
    CaError::Generation {
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use x509_parser::prelude::FromDer;

    use super::*;
    use crate::replication::activation::cert::{Purpose, parse_certificate, verify_issued_by};

    const CLUSTER: &str = "3f1c2a9e-7b4d-4e1a-9c3b-2d5e6f708192";
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn ca(seed: u64) -> (ReplicationCa, ChaCha20Rng) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = ReplicationCa::generate(&mut rng, NOW, CLUSTER).unwrap();
        (ca, rng)
    }

    #[test]
    fn ca_cert_has_ca_constraints() {
        let (ca, _) = ca(1);
        let (_, parsed) =
            x509_parser::certificate::X509Certificate::from_der(ca.cert_der()).unwrap();
        let constraints = parsed.basic_constraints().unwrap().unwrap().value;
        assert!(constraints.ca);
        let usage = parsed.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign());
        let subject = parsed.subject().to_string();
        assert_eq!(subject, format!("CN=coffer-replication-ca {CLUSTER}"));
    }

    #[test]
    fn ca_validity_is_backdated_and_ten_years() {
        let (ca, _) = ca(2);
        let (_, parsed) =
            x509_parser::certificate::X509Certificate::from_der(ca.cert_der()).unwrap();
        let validity = parsed.validity();
        let not_before = validity.not_before.timestamp();
        let not_after = validity.not_after.timestamp();
        assert_eq!(not_before, 1_800_000_000 - 60);
        assert_eq!(not_after - 1_800_000_000, 10 * 365 * 24 * 60 * 60);
    }

    #[test]
    fn primary_cert_is_server_auth_only() {
        let (ca, mut rng) = ca(3);
        let issued = ca
            .issue_primary_cert(
                &mut rng,
                NOW,
                &["https://10.0.0.5:8201", "node-1.example:8201"],
            )
            .unwrap();
        let info = parse_certificate(&issued.cert_der).unwrap();
        assert_eq!(info.purpose, Purpose::ServerAuthOnly);
        assert!(
            info.dns_names
                .contains(&format!("primary.{CLUSTER}.coffer"))
        );
        assert!(info.dns_names.contains(&"node-1.example".to_owned()));
        assert!(issued.key.is_some());
        assert_eq!(info.serial, issued.serial);
    }

    #[test]
    fn primary_cert_names_ip_host() {
        let (ca, mut rng) = ca(4);
        let issued = ca
            .issue_primary_cert(&mut rng, NOW, &["[::1]:8201"])
            .unwrap();
        let (_, parsed) =
            x509_parser::certificate::X509Certificate::from_der(&issued.cert_der).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap().value;
        let has_ip = san.general_names.iter().any(|name| {
            matches!(name, x509_parser::extensions::GeneralName::IPAddress(ip) if ip.len() == 16)
        });
        assert!(has_ip);
    }

    #[test]
    fn cluster_addr_hosts_are_extracted() {
        assert_eq!(addr_host("https://10.0.0.5:8201"), Some("10.0.0.5"));
        assert_eq!(addr_host("tcp://node-1:8201/"), Some("node-1"));
        assert_eq!(addr_host("node-1"), Some("node-1"));
        assert_eq!(addr_host("[fe80::1]:8201"), Some("fe80::1"));
        assert_eq!(addr_host("fe80::1"), Some("fe80::1"));
        assert_eq!(addr_host(":8201"), None);
    }

    #[test]
    fn primary_cert_names_each_host_once() {
        let (ca, mut rng) = ca(23);
        let addrs = ["https://node-1:8201", "node-1:8202"];
        let issued = ca.issue_primary_cert(&mut rng, NOW, &addrs).unwrap();
        let info = parse_certificate(&issued.cert_der).unwrap();
        let expected = vec![format!("primary.{CLUSTER}.coffer"), "node-1".to_owned()];
        assert_eq!(info.dns_names, expected);
    }

    #[test]
    fn primary_cert_rejects_bad_cluster_addr() {
        let (ca, mut rng) = ca(5);
        let result = ca.issue_primary_cert(&mut rng, NOW, &["host:notaport"]);
        assert_eq!(
            result.unwrap_err(),
            CaError::InvalidClusterAddr {
                addr: "host:notaport".to_owned()
            }
        );
    }

    #[test]
    fn secondary_cert_is_client_auth_only() {
        let (ca, mut rng) = ca(6);
        let issued = ca.issue_secondary_cert(&mut rng, NOW, "east-1").unwrap();
        let peer = cert::parse_secondary_peer(&issued.cert_der, CLUSTER).unwrap();
        assert_eq!(peer.secondary_id, "east-1");
        assert_eq!(peer.serial, issued.serial);
        assert_eq!(issued.serial.len(), 32);
        let info = parse_certificate(&issued.cert_der).unwrap();
        assert_eq!(info.purpose, Purpose::ClientAuthOnly);
    }

    #[test]
    fn primary_cert_cannot_pose_as_secondary() {
        let (ca, mut rng) = ca(7);
        let issued = ca.issue_primary_cert(&mut rng, NOW, &[]).unwrap();
        let result = cert::parse_secondary_peer(&issued.cert_der, CLUSTER);
        assert_eq!(
            result.unwrap_err(),
            CertError::WrongPurpose {
                expected: Purpose::ClientAuthOnly,
                found: Purpose::ServerAuthOnly
            }
        );
    }

    #[test]
    fn secondary_cert_verifies_only_against_its_ca() {
        let (ca, mut rng) = ca(8);
        let (other, _) = self::ca(9);
        let issued = ca.issue_secondary_cert(&mut rng, NOW, "east").unwrap();
        assert_eq!(verify_issued_by(&issued.cert_der, ca.cert_der()), Ok(()));
        let wrong = verify_issued_by(&issued.cert_der, other.cert_der());
        assert!(matches!(wrong, Err(CertError::NotIssuedByCa { .. })));
    }

    #[test]
    fn certified_key_has_no_private_key() {
        let (ca, mut rng) = ca(10);
        let own = PrivateKey::generate(&mut rng).public_key();
        let issued = ca
            .certify_secondary_key(&mut rng, NOW, "west", &own)
            .unwrap();
        assert!(issued.key.is_none());
        let info = parse_certificate(&issued.cert_der).unwrap();
        assert_eq!(info.public_key, own.as_bytes());
        assert_eq!(verify_issued_by(&issued.cert_der, ca.cert_der()), Ok(()));
    }

    #[test]
    fn same_seed_gives_identical_certificates() {
        let (first_ca, mut first_rng) = ca(11);
        let (second_ca, mut second_rng) = ca(11);
        assert_eq!(first_ca.cert_der(), second_ca.cert_der());
        let first = first_ca
            .issue_secondary_cert(&mut first_rng, NOW, "a")
            .unwrap();
        let second = second_ca
            .issue_secondary_cert(&mut second_rng, NOW, "a")
            .unwrap();
        assert_eq!(first.cert_der, second.cert_der);
        assert_eq!(first.serial, second.serial);
    }

    #[test]
    fn different_seeds_give_different_serials() {
        let (first_ca, mut first_rng) = ca(12);
        let (_, mut second_rng) = ca(13);
        let first = first_ca
            .issue_secondary_cert(&mut first_rng, NOW, "a")
            .unwrap();
        let second = first_ca
            .issue_secondary_cert(&mut second_rng, NOW, "a")
            .unwrap();
        assert_ne!(first.serial, second.serial);
    }

    #[test]
    fn ca_serde_round_trip_keeps_issuing() {
        let (ca, mut rng) = ca(14);
        let json = serde_json::to_string(&ca).unwrap();
        let loaded: ReplicationCa = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        let issued = loaded.issue_secondary_cert(&mut rng, NOW, "b").unwrap();
        assert_eq!(verify_issued_by(&issued.cert_der, ca.cert_der()), Ok(()));
    }

    #[test]
    fn stored_ca_with_foreign_key_is_rejected() {
        let (ca, _) = ca(15);
        let (other, _) = self::ca(16);
        let mut stored = StoredCa::from(ca);
        stored.key = StoredCa::from(other).key;
        assert_eq!(
            ReplicationCa::try_from(stored).unwrap_err(),
            CaError::KeyMismatch
        );
    }

    #[test]
    fn ca_debug_prints_no_key() {
        let (ca, _) = ca(17);
        let printed = format!("{ca:?}");
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            ca.key.pkcs8_der(),
        );
        assert!(!printed.contains(&key));
        assert!(!printed.contains("PrivateKey"));
        assert!(printed.contains(CLUSTER));
    }

    fn webpki_verify(
        ca: &ReplicationCa,
        cert_der: &[u8],
        usage: webpki::KeyUsage,
    ) -> Result<(), webpki::Error> {
        let ca_der = CertificateDer::from(ca.cert_der());
        let anchor = webpki::anchor_from_trusted_cert(&ca_der)?;
        let leaf_der = CertificateDer::from(cert_der);
        let leaf = webpki::EndEntityCert::try_from(&leaf_der)?;
        let time = UnixTime::since_unix_epoch(Duration::from_secs(NOW.as_secs()));
        let algorithms = [webpki::ring::ED25519];
        leaf.verify_for_usage(&algorithms, &[anchor], &[], time, usage, None, None)?;
        Ok(())
    }

    #[test]
    fn webpki_accepts_primary_cert_only_as_server() {
        let (ca, mut rng) = ca(19);
        let issued = ca
            .issue_primary_cert(&mut rng, NOW, &["10.0.0.5:8201", "node-1.example:8201"])
            .unwrap();
        let server = webpki_verify(&ca, &issued.cert_der, webpki::KeyUsage::server_auth());
        assert_eq!(server, Ok(()));
        let client = webpki_verify(&ca, &issued.cert_der, webpki::KeyUsage::client_auth());
        assert!(client.is_err());

        let leaf_der = CertificateDer::from(issued.cert_der.as_slice());
        let leaf = webpki::EndEntityCert::try_from(&leaf_der).unwrap();
        for name in [
            cert::primary_dns_name(CLUSTER).as_str(),
            "node-1.example",
            "10.0.0.5",
        ] {
            let server_name = ServerName::try_from(name).unwrap();
            assert_eq!(
                leaf.verify_is_valid_for_subject_name(&server_name),
                Ok(()),
                "{name}"
            );
        }
        let other = ServerName::try_from("primary.other.coffer").unwrap();
        assert!(leaf.verify_is_valid_for_subject_name(&other).is_err());
    }

    #[test]
    fn webpki_accepts_secondary_cert_only_as_client() {
        let (ca, mut rng) = ca(20);
        let (other_ca, _) = self::ca(21);
        let issued = ca.issue_secondary_cert(&mut rng, NOW, "dc_2").unwrap();
        let client = webpki_verify(&ca, &issued.cert_der, webpki::KeyUsage::client_auth());
        assert_eq!(client, Ok(()));
        let server = webpki_verify(&ca, &issued.cert_der, webpki::KeyUsage::server_auth());
        assert!(server.is_err());
        let foreign = webpki_verify(&other_ca, &issued.cert_der, webpki::KeyUsage::client_auth());
        assert!(foreign.is_err());
    }

    #[test]
    fn issued_cert_debug_prints_no_key() {
        let (ca, mut rng) = ca(22);
        let issued = ca.issue_secondary_cert(&mut rng, NOW, "east").unwrap();
        let printed = format!("{issued:?}");
        let key = issued.key.as_ref().unwrap();
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.pkcs8_der());
        assert!(!printed.contains(&encoded));
        assert!(!printed.contains(&format!("{:?}", &key.pkcs8_der()[..8])));
        assert!(printed.contains(&issued.serial));
    }

    #[test]
    fn ids_that_cannot_be_dns_labels_are_rejected() {
        assert!(validate_secondary_id("east_2").is_ok());
        assert!(validate_secondary_id("").is_err());
        assert!(validate_secondary_id("a.b").is_err());
        assert!(validate_secondary_id("-a").is_err());
        assert!(validate_secondary_id(&"a".repeat(64)).is_err());
        assert!(validate_cluster_id("Upper").is_err());
        let (_, mut rng) = ca(18);
        let result = ReplicationCa::generate(&mut rng, NOW, "bad id");
        assert!(matches!(result, Err(CaError::InvalidClusterId { .. })));
    }
}
