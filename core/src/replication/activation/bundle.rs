//! The bootstrap bundle: everything a secondary needs to open its first cluster connection.
//!
//! The primary stores it, as JSON, under the single-use wrapping token named by the activation
//! token's `jti`. The secondary unwraps it and calls [`BootstrapBundle::check_against`] before it
//! changes anything, so a bundle from another cluster, another CA or for another secondary is
//! rejected while the secondary is still as it was.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::cert::{self, CertError, Purpose};
use super::keys::{PrivateKey, der_base64};
use super::token::Claims;

/// The largest bundle accepted, in bytes. A real bundle is a few KiB.
pub const MAX_BUNDLE_LENGTH: usize = 64 * 1024;

/// Errors from decoding or checking a bootstrap bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bundle is larger than [`MAX_BUNDLE_LENGTH`].
    #[error("bootstrap bundle is {length} bytes, more than the maximum of {max}")]
    TooLarge {
        /// The bundle's length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The bundle is not the expected JSON.
    #[error("malformed bootstrap bundle: {reason}")]
    Malformed {
        /// The reason, without any of the bundle's values.
        reason: String,
    },
    /// The bundle is for another cluster than the token names.
    #[error("bootstrap bundle is for cluster {bundle:?} but the token names cluster {token:?}")]
    ClusterIdMismatch {
        /// The bundle's cluster id.
        bundle: String,
        /// The token's cluster id.
        token: String,
    },
    /// The bundle's epoch names another cluster than the bundle.
    #[error("bootstrap bundle epoch is for cluster {epoch:?}, not {bundle:?}")]
    EpochClusterMismatch {
        /// The epoch's cluster id.
        epoch: String,
        /// The bundle's cluster id.
        bundle: String,
    },
    /// The bundle is for another secondary than the token names.
    #[error("bootstrap bundle is for secondary {bundle:?} but the token names {token:?}")]
    SecondaryIdMismatch {
        /// The bundle's secondary id.
        bundle: String,
        /// The token's secondary id.
        token: String,
    },
    /// The secondary certificate names another secondary than the bundle.
    #[error("bootstrap bundle is for secondary {bundle:?} but its certificate names {cert:?}")]
    CertificateNamesOtherSecondary {
        /// The bundle's secondary id.
        bundle: String,
        /// The id in the secondary certificate.
        cert: String,
    },
    /// The CA certificate's fingerprint differs from the token's `ca_sha256`.
    #[error("bootstrap bundle CA has sha256 fingerprint {bundle} but the token names {token}")]
    CaFingerprintMismatch {
        /// The fingerprint of the bundle's CA certificate.
        bundle: String,
        /// The token's `ca_sha256`.
        token: String,
    },
    /// The CA certificate's fingerprint differs from the operator's `ca_sha256`.
    #[error(
        "bootstrap bundle CA has sha256 fingerprint {bundle}, not the {operator} given in \
         ca_sha256; check that the token comes from the intended primary"
    )]
    OperatorPinMismatch {
        /// The fingerprint of the bundle's CA certificate.
        bundle: String,
        /// The operator's pin, normalised.
        operator: String,
    },
    /// The operator's `ca_sha256` is not 64 hex digits.
    #[error("invalid ca_sha256: expected 64 hex digits (colons allowed), got {length} characters")]
    InvalidOperatorPin {
        /// The length of the rejected pin.
        length: usize,
    },
    /// One of the bundle's certificates failed a check.
    #[error("bootstrap bundle {which} certificate: {source}")]
    Certificate {
        /// `ca`, `primary` or `secondary`.
        which: &'static str,
        /// The certificate error.
        source: CertError,
    },
    /// The secondary key in the bundle does not match the secondary certificate.
    #[error("bootstrap bundle secondary key does not match the secondary certificate")]
    KeyMismatch,
}

/// The replication set's epoch when the bundle was issued: a promotion raises the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// The epoch number.
    pub number: u64,
    /// The cluster id the epoch belongs to.
    pub cluster_id: String,
}

/// The bootstrap bundle. `Debug` hides the secondary key.
///
/// Unknown fields are ignored, so a secondary can read a bundle from a newer primary.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapBundle {
    /// The replication set's cluster id.
    pub cluster_id: String,
    /// The secondary's id.
    pub secondary_id: String,
    /// The primary's cluster addresses, tried in order.
    pub primary_cluster_addrs: Vec<String>,
    /// The primary's API address.
    pub primary_api_addr: String,
    /// The replication CA certificate in DER.
    #[serde(with = "der_base64")]
    pub ca_cert_der: Vec<u8>,
    /// The primary's cluster certificate in DER, pinned by the secondary.
    #[serde(with = "der_base64")]
    pub primary_cert_der: Vec<u8>,
    /// The secondary's client certificate in DER.
    #[serde(with = "der_base64")]
    pub secondary_cert_der: Vec<u8>,
    /// The secondary's private key; absent when the secondary supplied its own public key.
    #[serde(default)]
    pub secondary_key: Option<PrivateKey>,
    /// The epoch at issue.
    pub epoch: Epoch,
    /// The position where the issuing primary's epoch starts: the last entry it shares with
    /// the primaries before it. `update-primary` quarantines a follower's own entries after it.
    #[serde(default)]
    pub epoch_start: Option<crate::replication::position::Position>,
}

impl BootstrapBundle {
    /// Encodes the bundle as JSON bytes, the form stored under the wrapping token.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a bundle is strings, integers and base64")
    }

    /// Checks the bundle against the token it came with and the operator's optional CA pin.
    ///
    /// The cluster id, secondary id and CA fingerprint must match the claims. The CA must match
    /// the pin, compared in constant time. Both certificates must be signed by the CA with the
    /// right purpose, the secondary certificate must name this secondary, and a bundled key
    /// must belong to the secondary certificate.
    pub fn check_against(
        &self,
        claims: &Claims,
        operator_ca_sha256: Option<&str>,
    ) -> Result<(), BundleError> {
        self.check_ids(claims)?;
        let ca_sha256 = cert::sha256_fingerprint(&self.ca_cert_der);
        check_token_fingerprint(&ca_sha256, &claims.ca_sha256)?;
        if let Some(pin) = operator_ca_sha256 {
            check_operator_pin(&ca_sha256, pin)?;
        }
        self.check_primary_cert()?;
        self.check_secondary_cert()
    }

    /// Checks whether `presented_der` is the pinned primary certificate, in constant time.
    pub fn is_pinned_primary(&self, presented_der: &[u8]) -> bool {
        bool::from(self.primary_cert_der.as_slice().ct_eq(presented_der))
    }

    fn check_ids(&self, claims: &Claims) -> Result<(), BundleError> {
        if self.cluster_id != claims.cluster_id {
            return Err(BundleError::ClusterIdMismatch {
                bundle: self.cluster_id.clone(),
                token: claims.cluster_id.clone(),
            });
        }
        if self.epoch.cluster_id != self.cluster_id {
            return Err(BundleError::EpochClusterMismatch {
                epoch: self.epoch.cluster_id.clone(),
                bundle: self.cluster_id.clone(),
            });
        }
        if self.secondary_id != claims.id {
            return Err(BundleError::SecondaryIdMismatch {
                bundle: self.secondary_id.clone(),
                token: claims.id.clone(),
            });
        }
        Ok(())
    }

    fn check_primary_cert(&self) -> Result<(), BundleError> {
        let error = |source| BundleError::Certificate {
            which: "primary",
            source,
        };
        cert::verify_issued_by(&self.primary_cert_der, &self.ca_cert_der).map_err(error)?;
        let info = cert::parse_certificate(&self.primary_cert_der).map_err(error)?;
        cert::require_purpose(&info, Purpose::ServerAuthOnly).map_err(error)?;
        let name = cert::primary_dns_name(&self.cluster_id);
        cert::require_dns_name(&info, &name).map_err(error)
    }

    fn check_secondary_cert(&self) -> Result<(), BundleError> {
        let error = |source| BundleError::Certificate {
            which: "secondary",
            source,
        };
        cert::verify_issued_by(&self.secondary_cert_der, &self.ca_cert_der).map_err(error)?;
        let peer = cert::parse_secondary_peer(&self.secondary_cert_der, &self.cluster_id)
            .map_err(error)?;
        if peer.secondary_id != self.secondary_id {
            return Err(BundleError::CertificateNamesOtherSecondary {
                bundle: self.secondary_id.clone(),
                cert: peer.secondary_id,
            });
        }
        self.check_secondary_key()
    }

    fn check_secondary_key(&self) -> Result<(), BundleError> {
        let Some(key) = &self.secondary_key else {
            return Ok(());
        };
        let info = cert::parse_certificate(&self.secondary_cert_der).map_err(|source| {
            BundleError::Certificate {
                which: "secondary",
                source,
            }
        })?;
        if info.public_key == key.public_key().as_bytes() {
            Ok(())
        } else {
            Err(BundleError::KeyMismatch)
        }
    }
}

impl std::fmt::Debug for BootstrapBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapBundle")
            .field("cluster_id", &self.cluster_id)
            .field("secondary_id", &self.secondary_id)
            .field("primary_cluster_addrs", &self.primary_cluster_addrs)
            .field("primary_api_addr", &self.primary_api_addr)
            .field("ca_sha256", &cert::sha256_fingerprint(&self.ca_cert_der))
            .field("has_secondary_key", &self.secondary_key.is_some())
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Parses a bundle from JSON bytes. Returns an error for any bad input and never panics (a proptest checks this).
pub fn decode_bundle(bytes: &[u8]) -> Result<BootstrapBundle, BundleError> {
    if bytes.len() > MAX_BUNDLE_LENGTH {
        return Err(BundleError::TooLarge {
            length: bytes.len(),
            max: MAX_BUNDLE_LENGTH,
        });
    }
    // serde_json's messages can quote the offending value, which may be key material, so only
    // the position and category reach the error.
    serde_json::from_slice(bytes).map_err(|error| BundleError::Malformed {
        reason: format!(
            "invalid {:?} at line {} column {}",
            error.classify(),
            error.line(),
            error.column()
        )
        .to_lowercase(),
    })
}

fn check_token_fingerprint(bundle: &str, token: &str) -> Result<(), BundleError> {
    if bool::from(bundle.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(BundleError::CaFingerprintMismatch {
            bundle: bundle.to_owned(),
            token: token.chars().take(64).collect(),
        })
    }
}

fn check_operator_pin(bundle: &str, pin: &str) -> Result<(), BundleError> {
    let normalised = normalise_fingerprint(pin)?;
    if bool::from(bundle.as_bytes().ct_eq(normalised.as_bytes())) {
        Ok(())
    } else {
        Err(BundleError::OperatorPinMismatch {
            bundle: bundle.to_owned(),
            operator: normalised,
        })
    }
}

/// Lowercases a hex fingerprint and drops colons, so `AB:CD:...` pins match.
pub fn normalise_fingerprint(pin: &str) -> Result<String, BundleError> {
    let normalised: String = pin
        .trim()
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if normalised.len() == 64 && normalised.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(normalised)
    } else {
        Err(BundleError::InvalidOperatorPin {
            length: pin.chars().count(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::replication::activation::ca::ReplicationCa;
    use crate::replication::activation::token::ClaimsParams;
    use crate::time::Timestamp;

    const CLUSTER: &str = "5a0e3c1b-0000-4000-8000-00000000abcd";
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    struct Fixture {
        ca: ReplicationCa,
        bundle: BootstrapBundle,
        claims: Claims,
        rng: ChaCha20Rng,
    }

    fn fixture(seed: u64) -> Fixture {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = ReplicationCa::generate(&mut rng, NOW, CLUSTER).unwrap();
        let primary = ca
            .issue_primary_cert(&mut rng, NOW, &["127.0.0.1:8201"])
            .unwrap();
        let secondary = ca.issue_secondary_cert(&mut rng, NOW, "east").unwrap();
        let bundle = BootstrapBundle {
            cluster_id: CLUSTER.to_owned(),
            secondary_id: "east".to_owned(),
            primary_cluster_addrs: vec!["127.0.0.1:8201".to_owned()],
            primary_api_addr: "https://127.0.0.1:8200".to_owned(),
            ca_cert_der: ca.cert_der().to_vec(),
            primary_cert_der: primary.cert_der,
            secondary_cert_der: secondary.cert_der,
            secondary_key: secondary.key,
            epoch: Epoch {
                number: 1,
                cluster_id: CLUSTER.to_owned(),
            },
            epoch_start: None,
        };
        let params = ClaimsParams {
            jti: "wrapping-token".to_owned(),
            addr: Some("https://127.0.0.1:8200".to_owned()),
            id: "east".to_owned(),
            cluster_id: CLUSTER.to_owned(),
            ca_sha256: ca.ca_sha256(),
        };
        let claims = Claims::new(params, NOW, Duration::from_secs(1800));
        Fixture {
            ca,
            bundle,
            claims,
            rng,
        }
    }

    #[test]
    fn bundle_round_trip() {
        let fixture = fixture(1);
        let decoded = decode_bundle(&fixture.bundle.encode()).unwrap();
        assert_eq!(decoded, fixture.bundle);
        assert_eq!(decoded.check_against(&fixture.claims, None), Ok(()));
    }

    #[test]
    fn bundle_passes_with_matching_operator_pin() {
        let fixture = fixture(2);
        let pin = fixture.ca.ca_sha256().to_uppercase();
        assert_eq!(
            fixture.bundle.check_against(&fixture.claims, Some(&pin)),
            Ok(())
        );
    }

    #[test]
    fn mismatched_cluster_id_is_rejected() {
        let mut fixture = fixture(3);
        fixture.claims.cluster_id = "other-cluster".to_owned();
        let expected = BundleError::ClusterIdMismatch {
            bundle: CLUSTER.to_owned(),
            token: "other-cluster".to_owned(),
        };
        assert_eq!(
            fixture.bundle.check_against(&fixture.claims, None),
            Err(expected)
        );
    }

    #[test]
    fn mismatched_ca_fingerprint_is_rejected() {
        let mut fixture = fixture(4);
        fixture.claims.ca_sha256 = "00".repeat(32);
        let expected = BundleError::CaFingerprintMismatch {
            bundle: fixture.ca.ca_sha256(),
            token: "00".repeat(32),
        };
        assert_eq!(
            fixture.bundle.check_against(&fixture.claims, None),
            Err(expected)
        );
    }

    #[test]
    fn wrong_operator_pin_is_rejected() {
        let fixture = fixture(5);
        let pin = "11".repeat(32);
        let expected = BundleError::OperatorPinMismatch {
            bundle: fixture.ca.ca_sha256(),
            operator: pin.clone(),
        };
        let result = fixture.bundle.check_against(&fixture.claims, Some(&pin));
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn operator_pin_that_is_not_hex_is_invalid() {
        let fixture = fixture(6);
        let result = fixture.bundle.check_against(&fixture.claims, Some("abc"));
        assert_eq!(result, Err(BundleError::InvalidOperatorPin { length: 3 }));
    }

    #[test]
    fn secondary_cert_from_other_ca_is_rejected() {
        let mut fixture = fixture(7);
        let mut rng = ChaCha20Rng::seed_from_u64(70);
        let other = ReplicationCa::generate(&mut rng, NOW, CLUSTER).unwrap();
        let foreign = other.issue_secondary_cert(&mut rng, NOW, "east").unwrap();
        fixture.bundle.secondary_cert_der = foreign.cert_der;
        fixture.bundle.secondary_key = foreign.key;
        let result = fixture.bundle.check_against(&fixture.claims, None);
        let expected = BundleError::Certificate {
            which: "secondary",
            source: CertError::NotIssuedByCa {
                ca_sha256: fixture.ca.ca_sha256(),
            },
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn secondary_cert_for_other_id_is_rejected() {
        let mut fixture = fixture(8);
        let west = fixture
            .ca
            .issue_secondary_cert(&mut fixture.rng, NOW, "west")
            .unwrap();
        fixture.bundle.secondary_cert_der = west.cert_der;
        fixture.bundle.secondary_key = west.key;
        let expected = BundleError::CertificateNamesOtherSecondary {
            bundle: "east".to_owned(),
            cert: "west".to_owned(),
        };
        assert_eq!(
            fixture.bundle.check_against(&fixture.claims, None),
            Err(expected)
        );
    }

    #[test]
    fn token_for_other_secondary_is_rejected() {
        let mut fixture = fixture(9);
        fixture.claims.id = "west".to_owned();
        let result = fixture.bundle.check_against(&fixture.claims, None);
        assert!(matches!(
            result,
            Err(BundleError::SecondaryIdMismatch { .. })
        ));
    }

    #[test]
    fn primary_cert_in_secondary_slot_is_rejected() {
        let mut fixture = fixture(10);
        fixture.bundle.secondary_cert_der = fixture.bundle.primary_cert_der.clone();
        let result = fixture.bundle.check_against(&fixture.claims, None);
        let expected = BundleError::Certificate {
            which: "secondary",
            source: CertError::WrongPurpose {
                expected: Purpose::ClientAuthOnly,
                found: Purpose::ServerAuthOnly,
            },
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn secondary_cert_in_primary_slot_is_rejected() {
        let mut fixture = fixture(11);
        fixture.bundle.primary_cert_der = fixture.bundle.secondary_cert_der.clone();
        let result = fixture.bundle.check_against(&fixture.claims, None);
        let expected = BundleError::Certificate {
            which: "primary",
            source: CertError::WrongPurpose {
                expected: Purpose::ServerAuthOnly,
                found: Purpose::ClientAuthOnly,
            },
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn primary_cert_of_other_cluster_is_rejected() {
        let mut fixture = fixture(15);
        let mut rng = ChaCha20Rng::seed_from_u64(150);
        let other = ReplicationCa::generate(&mut rng, NOW, "other-cluster").unwrap();
        let primary = other.issue_primary_cert(&mut rng, NOW, &[]).unwrap();
        let secondary = other.issue_secondary_cert(&mut rng, NOW, "east").unwrap();
        fixture.bundle.ca_cert_der = other.cert_der().to_vec();
        fixture.bundle.primary_cert_der = primary.cert_der;
        fixture.bundle.secondary_cert_der = secondary.cert_der;
        fixture.bundle.secondary_key = secondary.key;
        fixture.claims.ca_sha256 = other.ca_sha256();
        let result = fixture.bundle.check_against(&fixture.claims, None);
        let expected = BundleError::Certificate {
            which: "primary",
            source: CertError::MissingName {
                name: format!("primary.{CLUSTER}.coffer"),
            },
        };
        assert_eq!(result, Err(expected));
    }

    #[test]
    fn pinned_primary_matches_only_its_cert() {
        let fixture = fixture(16);
        assert!(
            fixture
                .bundle
                .is_pinned_primary(&fixture.bundle.primary_cert_der)
        );
        assert!(
            !fixture
                .bundle
                .is_pinned_primary(&fixture.bundle.secondary_cert_der)
        );
    }

    #[test]
    fn key_not_matching_cert_is_rejected() {
        let mut fixture = fixture(12);
        fixture.bundle.secondary_key = Some(PrivateKey::generate(&mut fixture.rng));
        let result = fixture.bundle.check_against(&fixture.claims, None);
        assert_eq!(result, Err(BundleError::KeyMismatch));
    }

    #[test]
    fn bundle_without_key_round_trips_and_checks() {
        let mut fixture = fixture(13);
        let own = PrivateKey::generate(&mut fixture.rng).public_key();
        let certified = fixture
            .ca
            .certify_secondary_key(&mut fixture.rng, NOW, "east", &own)
            .unwrap();
        fixture.bundle.secondary_cert_der = certified.cert_der;
        fixture.bundle.secondary_key = None;
        let decoded = decode_bundle(&fixture.bundle.encode()).unwrap();
        assert_eq!(decoded.secondary_key, None);
        assert_eq!(decoded.check_against(&fixture.claims, None), Ok(()));
    }

    #[test]
    fn bundle_debug_prints_no_key() {
        let fixture = fixture(14);
        let printed = format!("{:?}", fixture.bundle);
        let key = fixture.bundle.secondary_key.as_ref().unwrap();
        let encoded =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.pkcs8_der());
        assert!(!printed.contains(&encoded));
        assert!(!printed.contains(&encoded[encoded.len() - 24..]));
        assert!(printed.contains("has_secondary_key: true"));
    }

    #[test]
    fn malformed_bundle_error_quotes_no_value() {
        let bytes = br#"{"cluster_id": 7, "secondary_key": "c2VjcmV0LWtleQ=="}"#;
        let error = decode_bundle(bytes).unwrap_err();
        assert!(matches!(error, BundleError::Malformed { .. }));
        assert!(!error.to_string().contains("c2VjcmV0LWtleQ"));
        let bad_key = br#"{"secondary_key": "c2VjcmV0LWtleQ=="}"#;
        let error = decode_bundle(bad_key).unwrap_err();
        assert!(!error.to_string().contains("c2VjcmV0LWtleQ"));
    }

    #[test]
    fn oversized_bundle_is_rejected() {
        let bytes = vec![b' '; MAX_BUNDLE_LENGTH + 1];
        let expected = BundleError::TooLarge {
            length: MAX_BUNDLE_LENGTH + 1,
            max: MAX_BUNDLE_LENGTH,
        };
        assert_eq!(decode_bundle(&bytes), Err(expected));
    }

    fn encoded_fixture() -> &'static [u8] {
        static ENCODED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        ENCODED.get_or_init(|| fixture(17).bundle.encode())
    }

    proptest! {
        #[test]
        fn decode_bundle_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_bundle(&bytes);
        }

        #[test]
        fn mutated_bundle_never_panics(index in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = encoded_fixture().to_vec();
            let position = index % bytes.len();
            bytes[position] = byte;
            let claims = fixture(17).claims;
            if let Ok(bundle) = decode_bundle(&bytes) {
                let _ = bundle.check_against(&claims, None);
            }
        }
    }
}
