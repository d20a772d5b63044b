//! The two ends of activation as single calls: what the primary builds for `secondary-token`,
//! and what the secondary checks in `secondary/enable` before it changes anything.

use std::time::Duration;

use rand_core::CryptoRngCore;

use super::bundle::{self, BootstrapBundle, BundleError, Epoch};
use super::ca::{CaError, IssuedCert, ReplicationCa};
use super::keys::{PrivateKey, PublicKey};
use super::revocation::{ActiveCert, SecondaryRegistry, Voided};
use super::token::{self, Claims, ClaimsParams, TokenError};
use crate::request::Secret;
use crate::time::Timestamp;

/// Errors from the activation steps, each naming the step that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivationError {
    /// The secondary certificate could not be issued.
    #[error("issuing the secondary certificate failed: {0}")]
    Certificate(#[from] CaError),
    /// The activation token is unusable.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The bundle does not match the token or the operator's pin.
    #[error("{0}")]
    Bundle(#[from] BundleError),
}

/// The primary's side of one `secondary-token` call.
#[derive(Debug)]
pub struct SecondaryTokenRequest<'a> {
    /// The secondary id from the request.
    pub secondary_id: &'a str,
    /// The token's lifetime.
    pub ttl: Duration,
    /// The key the secondary generated, from `secondary_public_key`, if it sent one.
    pub secondary_public_key: Option<PublicKey>,
    /// The id of the wrapping token that will hold the bundle: the `jti` claim.
    pub wrapping_token: &'a Secret,
    /// The wrapping token's accessor, which the registry records so revocation can void it.
    pub wrapping_accessor: &'a str,
    /// The primary's API address, if it has one.
    pub primary_api_addr: Option<&'a str>,
    /// The primary's cluster addresses.
    pub primary_cluster_addrs: &'a [String],
    /// The primary's cluster certificate in DER.
    pub primary_cert_der: &'a [u8],
    /// The current epoch number.
    pub epoch: u64,
    /// The position where the current epoch starts, when known.
    pub epoch_start: Option<crate::replication::position::Position>,
}

/// The results of one `secondary-token` call: the token to return and the state to store.
#[derive(Debug)]
pub struct IssuedActivation {
    /// The compact JWT for `wrap_info.token`.
    pub token: Secret,
    /// The bundle to store under the wrapping token.
    pub bundle: BootstrapBundle,
    /// The serial of the new secondary certificate.
    pub serial: String,
    /// The registry after the issue, to store in place of the old one.
    pub registry: SecondaryRegistry,
    /// The certificate and tokens the issue replaced, which the caller voids.
    pub voided: Voided,
}

/// Issues a secondary certificate, its bundle and its activation token, and records it.
///
/// Pure: the caller writes the returned bundle and registry to storage first, and only then
/// acts on `voided`, so a rerun of the request changes nothing twice.
pub fn issue_secondary_token(
    ca: &ReplicationCa,
    signing_key: &PrivateKey,
    registry: &SecondaryRegistry,
    rng: &mut dyn CryptoRngCore,
    now: Timestamp,
    request: &SecondaryTokenRequest<'_>,
) -> Result<IssuedActivation, ActivationError> {
    let issued = issue_cert(ca, rng, now, request)?;
    let claims = Claims::new(claims_params(ca, request), now, request.ttl);
    let token = Secret::new(token::issue(signing_key, &claims));
    let mut registry = registry.clone();
    let cert = ActiveCert {
        serial: issued.serial.clone(),
        issued_at: now,
    };
    let expires_at = Timestamp::from_secs(claims.exp);
    let voided = registry.issue(
        request.secondary_id,
        cert,
        request.wrapping_accessor,
        expires_at,
    );
    Ok(IssuedActivation {
        token,
        serial: issued.serial,
        bundle: build_bundle(ca, request, issued.cert_der, issued.key),
        registry,
        voided,
    })
}

/// Checks an unwrapped bundle against its activation token and the operator's optional pin.
///
/// The secondary calls this after the unwrap and before it records or wipes anything. The
/// token's signature is not checked here, because only the primary has its key. The primary
/// checked it during the unwrap, and the mTLS handshake that follows proves the primary.
pub fn check_unwrapped_bundle(
    token: &str,
    bundle_bytes: &[u8],
    operator_ca_sha256: Option<&str>,
) -> Result<BootstrapBundle, ActivationError> {
    let claims = token::parse_unverified(token)?;
    let bundle = bundle::decode_bundle(bundle_bytes)?;
    bundle.check_against(&claims, operator_ca_sha256)?;
    Ok(bundle)
}

fn issue_cert(
    ca: &ReplicationCa,
    rng: &mut dyn CryptoRngCore,
    now: Timestamp,
    request: &SecondaryTokenRequest<'_>,
) -> Result<IssuedCert, CaError> {
    match &request.secondary_public_key {
        Some(public_key) => ca.certify_secondary_key(rng, now, request.secondary_id, public_key),
        None => ca.issue_secondary_cert(rng, now, request.secondary_id),
    }
}

fn claims_params(ca: &ReplicationCa, request: &SecondaryTokenRequest<'_>) -> ClaimsParams {
    ClaimsParams {
        jti: request.wrapping_token.expose().to_owned(),
        addr: request.primary_api_addr.map(str::to_owned),
        id: request.secondary_id.to_owned(),
        cluster_id: ca.cluster_id().to_owned(),
        ca_sha256: ca.ca_sha256(),
    }
}

fn build_bundle(
    ca: &ReplicationCa,
    request: &SecondaryTokenRequest<'_>,
    secondary_cert_der: Vec<u8>,
    secondary_key: Option<PrivateKey>,
) -> BootstrapBundle {
    BootstrapBundle {
        cluster_id: ca.cluster_id().to_owned(),
        secondary_id: request.secondary_id.to_owned(),
        primary_cluster_addrs: request.primary_cluster_addrs.to_vec(),
        primary_api_addr: request.primary_api_addr.unwrap_or_default().to_owned(),
        ca_cert_der: ca.cert_der().to_vec(),
        primary_cert_der: request.primary_cert_der.to_vec(),
        secondary_cert_der,
        secondary_key,
        epoch: Epoch {
            number: request.epoch,
            cluster_id: ca.cluster_id().to_owned(),
        },
        epoch_start: request.epoch_start.clone(),
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::replication::activation::token::ACTIVATION_TOKEN_TYPE;

    const CLUSTER: &str = "9b2d0c4e-1111-4222-8333-444455556666";
    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    struct Primary {
        ca: ReplicationCa,
        signing_key: PrivateKey,
        primary_cert: IssuedCert,
        rng: ChaCha20Rng,
    }

    fn primary(seed: u64) -> Primary {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ca = ReplicationCa::generate(&mut rng, NOW, CLUSTER).unwrap();
        let signing_key = PrivateKey::generate(&mut rng);
        let primary_cert = ca
            .issue_primary_cert(&mut rng, NOW, &["127.0.0.1:8201"])
            .unwrap();
        Primary {
            ca,
            signing_key,
            primary_cert,
            rng,
        }
    }

    fn issue(
        primary: &mut Primary,
        registry: &SecondaryRegistry,
        public_key: Option<PublicKey>,
    ) -> IssuedActivation {
        let wrapping_token = Secret::new("hvs.wrapping");
        let addrs = vec!["127.0.0.1:8201".to_owned()];
        let request = SecondaryTokenRequest {
            secondary_id: "east",
            ttl: Duration::from_secs(1800),
            secondary_public_key: public_key,
            wrapping_token: &wrapping_token,
            wrapping_accessor: "accessor-1",
            primary_api_addr: Some("https://127.0.0.1:8200"),
            primary_cluster_addrs: &addrs,
            primary_cert_der: &primary.primary_cert.cert_der,
            epoch: 1,
            epoch_start: None,
        };
        issue_secondary_token(
            &primary.ca,
            &primary.signing_key,
            registry,
            &mut primary.rng,
            NOW,
            &request,
        )
        .unwrap()
    }

    #[test]
    fn issued_activation_passes_both_checks() {
        let mut primary = primary(1);
        let issued = issue(&mut primary, &SecondaryRegistry::new(), None);
        let token = issued.token.expose();
        let public_key = primary.signing_key.public_key();
        let claims = token::verify(&public_key, token, NOW, ACTIVATION_TOKEN_TYPE).unwrap();
        assert_eq!(claims.jti, "hvs.wrapping");
        assert_eq!(claims.id, "east");
        let bundle = check_unwrapped_bundle(token, &issued.bundle.encode(), None).unwrap();
        assert_eq!(bundle, issued.bundle);
        assert!(bundle.secondary_key.is_some());
        assert!(issued.registry.is_active("east", &issued.serial));
    }

    #[test]
    fn public_key_activation_bundles_no_key() {
        let mut primary = primary(2);
        let own = PrivateKey::generate(&mut primary.rng).public_key();
        let issued = issue(&mut primary, &SecondaryRegistry::new(), Some(own));
        assert!(issued.bundle.secondary_key.is_none());
        let token = issued.token.expose();
        let result = check_unwrapped_bundle(token, &issued.bundle.encode(), None);
        assert!(result.is_ok());
    }

    #[test]
    fn reissue_voids_previous_token() {
        let mut primary = primary(3);
        let first = issue(&mut primary, &SecondaryRegistry::new(), None);
        let second = issue(&mut primary, &first.registry, None);
        assert_eq!(second.voided.serial.as_deref(), Some(first.serial.as_str()));
        assert!(second.registry.is_active("east", &second.serial));
        assert!(!second.registry.is_active("east", &first.serial));
    }

    #[test]
    fn bundle_for_other_token_is_rejected() {
        let mut primary = primary(4);
        let mut other = self::primary(5);
        let issued = issue(&mut primary, &SecondaryRegistry::new(), None);
        let foreign = issue(&mut other, &SecondaryRegistry::new(), None);
        let result = check_unwrapped_bundle(issued.token.expose(), &foreign.bundle.encode(), None);
        assert!(matches!(
            result,
            Err(ActivationError::Bundle(
                BundleError::CaFingerprintMismatch { .. }
            ))
        ));
    }

    #[test]
    fn issued_activation_debug_prints_no_secret() {
        let mut primary = primary(6);
        let issued = issue(&mut primary, &SecondaryRegistry::new(), None);
        let printed = format!("{issued:?}");
        assert!(!printed.contains(issued.token.expose()));
        assert!(!printed.contains("hvs.wrapping"));
    }
}
