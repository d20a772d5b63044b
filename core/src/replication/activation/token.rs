//! The activation token: a compact JWT, signed with EdDSA by a key only the primary holds.
//!
//! The primary returns it in `wrap_info.token` of `secondary-token`. The secondary reads it
//! unverified to find the primary's address and to check the cluster and CA it names. Only the
//! primary verifies it, at unwrap time, because only the primary has the key.
//!
//! The claim layout follows Vault's JWT wrapping tokens (`jti`, `iat`, `nbf` = now - 5 s, `exp`,
//! `type`, `addr`), plus `id`, `cluster_id` and `ca_sha256`. The `type` value is
//! [`ACTIVATION_TOKEN_TYPE`] rather than Vault's `"wrapping"`: Vault's tokens are ES512 and
//! cannot be exchanged with ours anyway, and a distinct value keeps an activation token from
//! ever passing a check for a general-purpose wrapping JWT.
//!
//! Only jsonwebtoken's `crypto::sign` and `crypto::verify` are used: its `decode` reads the
//! system clock for `exp` and `nbf`, so the header and claims are checked here against `now`.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::keys::{PrivateKey, PublicKey};
use crate::time::Timestamp;

/// The `type` claim of an activation token.
pub const ACTIVATION_TOKEN_TYPE: &str = "replication-activation";

/// The maximum token length, in bytes. A real token is well under 1 KiB.
pub const MAX_TOKEN_LENGTH: usize = 8 * 1024;

/// How far `nbf` is set before `iat`, as Vault does, to absorb small clock differences.
pub const NOT_BEFORE_BACKDATE: Duration = Duration::from_secs(5);

/// The tolerance applied to `nbf` and `exp` when verifying.
pub const LEEWAY: Duration = Duration::from_secs(5);

const HEADER_ALGORITHM: &str = "EdDSA";
const HEADER_TYPE: &str = "JWT";

/// Errors from parsing or verifying a token. Messages name the claim and value, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_LENGTH`].
    #[error("activation token is {length} bytes, more than the maximum of {max}")]
    TooLong {
        /// The token's length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a compact JWT with a readable header and payload.
    #[error("malformed activation token: {reason}")]
    Malformed {
        /// The reason.
        reason: String,
    },
    /// The header names an algorithm other than EdDSA, such as `none`.
    #[error("activation token uses algorithm {alg:?}, only \"EdDSA\" is accepted")]
    UnsupportedAlgorithm {
        /// The `alg` header value.
        alg: String,
    },
    /// The signature does not verify with the primary's key.
    #[error("activation token signature is not valid for this primary's key")]
    BadSignature,
    /// A required claim is absent.
    #[error("activation token has no {claim:?} claim")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// A claim has the wrong JSON type or an unusable value.
    #[error("activation token claim {claim:?} is invalid: {reason}")]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
        /// The reason.
        reason: String,
    },
    /// The `type` claim is not the expected one.
    #[error("activation token has type {found:?}, expected {expected:?}")]
    WrongType {
        /// The expected type.
        expected: String,
        /// The token's type.
        found: String,
    },
    /// `exp` has passed.
    #[error("activation token expired at {exp} (now {now}); issue a new secondary token")]
    Expired {
        /// `exp` in RFC 3339.
        exp: String,
        /// The current time in RFC 3339.
        now: String,
    },
    /// `nbf` is still in the future.
    #[error("activation token is not valid before {nbf} (now {now}); check the clocks")]
    NotYetValid {
        /// `nbf` in RFC 3339.
        nbf: String,
        /// The current time in RFC 3339.
        now: String,
    },
}

/// The claims of an activation token. Times are whole seconds since the Unix epoch.
///
/// `Debug` hides `jti`, because it is the wrapping token that unwraps the bundle.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The wrapping token id under which the bootstrap bundle is stored.
    pub jti: String,
    /// Issue time.
    pub iat: u64,
    /// Not valid before this time: `iat` - 5 s.
    pub nbf: u64,
    /// Expiry time.
    pub exp: u64,
    /// The token type, [`ACTIVATION_TOKEN_TYPE`] for activation tokens.
    #[serde(rename = "type")]
    pub token_type: String,
    /// The primary's API address, where the secondary unwraps the bundle. Absent when the
    /// primary has no API address configured, so the operator must pass `primary_api_addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The secondary id the token was issued for.
    pub id: String,
    /// The replication set's cluster id.
    pub cluster_id: String,
    /// The SHA-256 fingerprint of the replication CA certificate, lowercase hex.
    pub ca_sha256: String,
}

impl Claims {
    /// Claims for an activation token issued at `now` that lives for `ttl`.
    pub fn new(params: ClaimsParams, now: Timestamp, ttl: Duration) -> Claims {
        let iat = now.as_secs();
        Claims {
            jti: params.jti,
            iat,
            nbf: iat.saturating_sub(NOT_BEFORE_BACKDATE.as_secs()),
            exp: iat.saturating_add(ttl.as_secs()),
            token_type: ACTIVATION_TOKEN_TYPE.to_owned(),
            addr: params.addr,
            id: params.id,
            cluster_id: params.cluster_id,
            ca_sha256: params.ca_sha256,
        }
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("jti", &"..")
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("exp", &self.exp)
            .field("type", &self.token_type)
            .field("addr", &self.addr)
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

/// The caller-chosen parts of [`Claims`]. The times follow from `now` and the TTL.
#[derive(Clone)]
pub struct ClaimsParams {
    /// The wrapping token id.
    pub jti: String,
    /// The primary's API address, if it has one configured.
    pub addr: Option<String>,
    /// The secondary id.
    pub id: String,
    /// The cluster id.
    pub cluster_id: String,
    /// The CA fingerprint.
    pub ca_sha256: String,
}

impl fmt::Debug for ClaimsParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimsParams")
            .field("id", &self.id)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// Checks whether `token` has the shape of a JWT rather than a plain token, by Vault's rule: exactly
/// two dots and a second character that is not a dot (namespaced tokens look like `s.xxx.ns`).
pub fn looks_like_jwt(token: &str) -> bool {
    let dots = token.bytes().filter(|&b| b == b'.').count();
    dots == 2 && token.as_bytes().get(1) != Some(&b'.')
}

/// Signs `claims` with `key` as a compact JWT with header `{"alg":"EdDSA","typ":"JWT"}`.
pub fn issue(key: &PrivateKey, claims: &Claims) -> String {
    let header = serde_json::json!({ "alg": HEADER_ALGORITHM, "typ": HEADER_TYPE });
    let payload = serde_json::to_vec(claims).expect("claims are strings and integers");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let encoding_key = EncodingKey::from_ed_der(key.pkcs8_der());
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &encoding_key, Algorithm::EdDSA)
            .expect("the key was produced or checked as Ed25519 PKCS#8 when it was built");
    format!("{signing_input}.{signature}")
}

/// Reads the claims without checking the signature or the times.
///
/// The secondary uses it to find `addr` and to check `cluster_id` and `ca_sha256` before
/// trusting anything the primary sends. Returns an error for any bad input and never panics (a proptest checks this).
pub fn parse_unverified(token: &str) -> Result<Claims, TokenError> {
    let parts = split(token)?;
    claims_from_json(&decode_part(parts.payload, "payload")?)
}

/// Verifies the signature with `public_key`, then the algorithm, the claims, the type and the
/// validity window at `now`.
pub fn verify(
    public_key: &PublicKey,
    token: &str,
    now: Timestamp,
    expected_type: &str,
) -> Result<Claims, TokenError> {
    let parts = split(token)?;
    check_header(&decode_part(parts.header, "header")?)?;
    check_signature(public_key, &parts)?;
    let claims = claims_from_json(&decode_part(parts.payload, "payload")?)?;
    check_type(&claims, expected_type)?;
    check_times(&claims, now)?;
    Ok(claims)
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LENGTH {
        return Err(TokenError::TooLong {
            length: token.len(),
            max: MAX_TOKEN_LENGTH,
        });
    }
    if !looks_like_jwt(token) {
        return Err(malformed(
            "expected three base64url parts separated by dots",
        ));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("expected three base64url parts separated by dots"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or_else(|| malformed("expected three base64url parts separated by dots"))?;
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn decode_part(part: &str, name: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("the {name} is not base64url without padding")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(&format!("the {name} is not a JSON object"))),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(), TokenError> {
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        _ => return Err(malformed("the header has no string \"alg\"")),
    };
    if alg != HEADER_ALGORITHM {
        return Err(TokenError::UnsupportedAlgorithm {
            alg: alg.chars().take(32).collect(),
        });
    }
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if typ == HEADER_TYPE => Ok(()),
        Some(_) => Err(malformed("the header \"typ\" is not \"JWT\"")),
    }
}

fn check_signature(public_key: &PublicKey, parts: &Parts<'_>) -> Result<(), TokenError> {
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| malformed("the signature is not base64url without padding"))?;
    if signature.len() != 64 {
        return Err(TokenError::BadSignature);
    }
    let decoding_key = DecodingKey::from_ed_der(public_key.as_bytes());
    let valid = jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signing_input.as_bytes(),
        &decoding_key,
        Algorithm::EdDSA,
    );
    match valid {
        Ok(true) => Ok(()),
        _ => Err(TokenError::BadSignature),
    }
}

fn claims_from_json(map: &Map<String, Value>) -> Result<Claims, TokenError> {
    Ok(Claims {
        jti: string_claim(map, "jti")?,
        iat: time_claim(map, "iat")?,
        nbf: time_claim(map, "nbf")?,
        exp: time_claim(map, "exp")?,
        token_type: string_claim(map, "type")?,
        addr: optional_string_claim(map, "addr")?,
        id: string_claim(map, "id")?,
        cluster_id: string_claim(map, "cluster_id")?,
        ca_sha256: string_claim(map, "ca_sha256")?,
    })
}

fn string_claim(map: &Map<String, Value>, claim: &'static str) -> Result<String, TokenError> {
    match map.get(claim) {
        None => Err(TokenError::MissingClaim { claim }),
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        Some(Value::String(_)) => Err(invalid_claim(claim, "it is empty")),
        Some(_) => Err(invalid_claim(claim, "expected a string")),
    }
}

fn optional_string_claim(
    map: &Map<String, Value>,
    claim: &'static str,
) -> Result<Option<String>, TokenError> {
    match map.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => string_claim(map, claim).map(Some),
    }
}

fn time_claim(map: &Map<String, Value>, claim: &'static str) -> Result<u64, TokenError> {
    match map.get(claim) {
        None => Err(TokenError::MissingClaim { claim }),
        Some(value) => value
            .as_u64()
            .ok_or_else(|| invalid_claim(claim, "expected whole seconds since the Unix epoch")),
    }
}

fn check_type(claims: &Claims, expected_type: &str) -> Result<(), TokenError> {
    if claims.token_type == expected_type {
        Ok(())
    } else {
        Err(TokenError::WrongType {
            expected: expected_type.to_owned(),
            found: claims.token_type.chars().take(64).collect(),
        })
    }
}

fn check_times(claims: &Claims, now: Timestamp) -> Result<(), TokenError> {
    let now_secs = now.as_secs();
    let leeway = LEEWAY.as_secs();
    if now_secs.saturating_add(leeway) < claims.nbf {
        return Err(TokenError::NotYetValid {
            nbf: rfc3339(claims.nbf),
            now: now.to_rfc3339_seconds(),
        });
    }
    if now_secs >= claims.exp.saturating_add(leeway) {
        return Err(TokenError::Expired {
            exp: rfc3339(claims.exp),
            now: now.to_rfc3339_seconds(),
        });
    }
    Ok(())
}

fn rfc3339(secs: u64) -> String {
    Timestamp::from_secs(secs).to_rfc3339_seconds()
}

fn malformed(reason: &str) -> TokenError {
    TokenError::Malformed {
        reason: reason.to_owned(),
    }
}

fn invalid_claim(claim: &'static str, reason: &str) -> TokenError {
    TokenError::InvalidClaim {
        claim,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const TTL: Duration = Duration::from_secs(30 * 60);

    fn params() -> ClaimsParams {
        ClaimsParams {
            jti: "hvs.wrapping-token-id".to_owned(),
            addr: Some("https://127.0.0.1:8200".to_owned()),
            id: "east".to_owned(),
            cluster_id: "c0ffee".to_owned(),
            ca_sha256: "ab".repeat(32),
        }
    }

    fn key(seed: u64) -> PrivateKey {
        PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn token(key: &PrivateKey) -> String {
        issue(key, &Claims::new(params(), NOW, TTL))
    }

    fn verify_at(key: &PrivateKey, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
        verify(&key.public_key(), token, now, ACTIVATION_TOKEN_TYPE)
    }

    /// Re-encodes `claims` under the original header and signature.
    fn with_payload(token: &str, payload: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let encoded = URL_SAFE_NO_PAD.encode(payload.to_string());
        format!("{}.{}.{}", parts[0], encoded, parts[2])
    }

    /// Signs an arbitrary header and payload with `key`.
    fn signed(key: &PrivateKey, header: &Value, payload: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let encoding_key = EncodingKey::from_ed_der(key.pkcs8_der());
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &encoding_key, Algorithm::EdDSA).unwrap();
        format!("{input}.{signature}")
    }

    fn claims_json() -> Value {
        serde_json::to_value(Claims::new(params(), NOW, TTL)).unwrap()
    }

    #[test]
    fn token_round_trip() {
        let key = key(1);
        let token = token(&key);
        let claims = verify_at(&key, &token, NOW).unwrap();
        assert_eq!(claims, Claims::new(params(), NOW, TTL));
        assert_eq!(claims.nbf, claims.iat - 5);
        assert_eq!(claims.exp, claims.iat + 1800);
        assert_eq!(parse_unverified(&token).unwrap(), claims);
    }

    #[test]
    fn token_header_is_eddsa_jwt() {
        let token = token(&key(2));
        let header = decode_part(token.split('.').next().unwrap(), "header").unwrap();
        assert_eq!(header.get("alg"), Some(&Value::from("EdDSA")));
        assert_eq!(header.get("typ"), Some(&Value::from("JWT")));
    }

    #[test]
    fn same_seed_gives_identical_tokens() {
        assert_eq!(token(&key(3)), token(&key(3)));
    }

    #[test]
    fn expired_token_is_rejected() {
        let key = key(4);
        let later = NOW.saturating_add(TTL + LEEWAY);
        let result = verify_at(&key, &token(&key), later);
        assert!(matches!(result, Err(TokenError::Expired { .. })));
        let just_inside = NOW.saturating_add(TTL);
        assert!(verify_at(&key, &token(&key), just_inside).is_ok());
    }

    #[test]
    fn not_yet_valid_token_is_rejected() {
        let key = key(5);
        let earlier = Timestamp::from_secs(NOW.as_secs() - 60);
        let result = verify_at(&key, &token(&key), earlier);
        let expected = TokenError::NotYetValid {
            nbf: rfc3339(NOW.as_secs() - 5),
            now: earlier.to_rfc3339_seconds(),
        };
        assert_eq!(result.unwrap_err(), expected);
    }

    #[test]
    fn wrong_type_is_rejected() {
        let key = key(6);
        let result = verify(&key.public_key(), &token(&key), NOW, "wrapping");
        let expected = TokenError::WrongType {
            expected: "wrapping".to_owned(),
            found: ACTIVATION_TOKEN_TYPE.to_owned(),
        };
        assert_eq!(result.unwrap_err(), expected);
    }

    #[test]
    fn tampered_payload_fails_signature() {
        let key = key(7);
        let mut payload = claims_json();
        payload["id"] = Value::from("west");
        let tampered = with_payload(&token(&key), &payload);
        assert_eq!(
            verify_at(&key, &tampered, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn token_signed_by_other_key_fails_signature() {
        let primary = key(8);
        let forger = key(9);
        let forged = token(&forger);
        assert_eq!(
            verify_at(&primary, &forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_is_rejected() {
        let key = key(10);
        let header = serde_json::json!({ "alg": "none", "typ": "JWT" });
        let payload = URL_SAFE_NO_PAD.encode(claims_json().to_string());
        let unsigned = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header.to_string()));
        let expected = TokenError::UnsupportedAlgorithm {
            alg: "none".to_owned(),
        };
        assert_eq!(verify_at(&key, &unsigned, NOW), Err(expected));
    }

    #[test]
    fn other_algorithm_is_rejected_even_when_signed() {
        let key = key(11);
        let header = serde_json::json!({ "alg": "HS256" });
        let token = signed(&key, &header, &claims_json());
        let expected = TokenError::UnsupportedAlgorithm {
            alg: "HS256".to_owned(),
        };
        assert_eq!(verify_at(&key, &token, NOW), Err(expected));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let key = key(12);
        for token in ["", "abc", "a.b", "a.b.c.d", "..x", "!!!.###.$$$", "e30.e30"] {
            let result = verify_at(&key, token, NOW);
            assert!(
                matches!(result, Err(TokenError::Malformed { .. })),
                "{token:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn oversized_token_is_rejected() {
        let key = key(13);
        let token = format!("{}.{}.{}", "a".repeat(4096), "b".repeat(4096), "c");
        let expected = TokenError::TooLong {
            length: token.len(),
            max: MAX_TOKEN_LENGTH,
        };
        assert_eq!(verify_at(&key, &token, NOW), Err(expected.clone()));
        assert_eq!(parse_unverified(&token), Err(expected));
    }

    #[test]
    fn missing_claim_is_named() {
        let key = key(14);
        let mut payload = claims_json();
        payload.as_object_mut().unwrap().remove("cluster_id");
        let token = signed(&key, &serde_json::json!({ "alg": "EdDSA" }), &payload);
        let expected = TokenError::MissingClaim {
            claim: "cluster_id",
        };
        assert_eq!(verify_at(&key, &token, NOW), Err(expected));
    }

    #[test]
    fn non_integer_time_claim_is_invalid() {
        let key = key(15);
        let mut payload = claims_json();
        payload["exp"] = Value::from("tomorrow");
        let token = signed(&key, &serde_json::json!({ "alg": "EdDSA" }), &payload);
        let result = verify_at(&key, &token, NOW);
        assert!(matches!(
            result,
            Err(TokenError::InvalidClaim { claim: "exp", .. })
        ));
    }

    #[test]
    fn errors_never_contain_the_token() {
        let key = key(16);
        let mut payload = claims_json();
        payload["type"] = Value::from("wrapping");
        let token = signed(&key, &serde_json::json!({ "alg": "EdDSA" }), &payload);
        let message = verify_at(&key, &token, NOW).unwrap_err().to_string();
        assert!(!message.contains(&token));
        assert!(!message.contains("hvs.wrapping-token-id"));
        assert!(message.contains("wrapping"));
    }

    #[test]
    fn token_without_addr_round_trips() {
        let key = key(17);
        let mut params = params();
        params.addr = None;
        let claims = Claims::new(params, NOW, TTL);
        let token = issue(&key, &claims);
        let payload = decode_part(token.split('.').nth(1).unwrap(), "payload").unwrap();
        assert!(!payload.contains_key("addr"));
        assert_eq!(verify_at(&key, &token, NOW), Ok(claims));
    }

    #[test]
    fn claims_debug_hides_jti() {
        let claims = Claims::new(params(), NOW, TTL);
        let printed = format!("{claims:?}");
        assert!(!printed.contains("hvs.wrapping-token-id"));
        assert!(printed.contains("east"));
    }

    #[test]
    fn jwt_shape_follows_vault_rule() {
        assert!(looks_like_jwt("aaa.bbb.ccc"));
        assert!(!looks_like_jwt("s.abc.ns1"));
        assert!(!looks_like_jwt("hvs.plaintoken"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(""));
    }

    proptest! {
        #[test]
        fn parse_unverified_never_panics(input in ".{0,300}") {
            let _ = parse_unverified(&input);
        }

        #[test]
        fn parse_unverified_never_panics_on_jwt_shapes(
            header in "[A-Za-z0-9_-]{0,80}",
            payload in "[A-Za-z0-9_-]{0,200}",
            signature in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = format!("{header}.{payload}.{signature}");
            let _ = parse_unverified(&token);
            let key = PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(0)).public_key();
            let _ = verify(&key, &token, NOW, ACTIVATION_TOKEN_TYPE);
        }
    }
}
