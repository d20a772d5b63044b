//! Hash and HMAC algorithms by Vault's names, and the `hash/` and `random/` endpoints, which
//! need no key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Mac, SimpleHmac};
use rand_core::CryptoRngCore;
use serde_json::{Map, Value, json};
use sha2::Digest;
use zeroize::Zeroizing;

use crate::engines::params;
use crate::error::Error;
use crate::request::Response;

use super::aead::decode_base64;

/// The largest `random/` request, as in Vault: 128 KiB.
const MAX_RANDOM_BYTES: u64 = 128 * 1024;

/// A hash function by Vault's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HashAlgorithm {
    /// SHA-1, for signatures only.
    Sha1,
    /// SHA-224.
    Sha2_224,
    /// SHA-256.
    Sha2_256,
    /// SHA-384.
    Sha2_384,
    /// SHA-512.
    Sha2_512,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// No hash: the input is signed as given, for RSA PKCS#1 v1.5 and ECDSA.
    None,
}

impl HashAlgorithm {
    const ALL: [(&'static str, HashAlgorithm); 10] = [
        ("sha1", HashAlgorithm::Sha1),
        ("sha2-224", HashAlgorithm::Sha2_224),
        ("sha2-256", HashAlgorithm::Sha2_256),
        ("sha2-384", HashAlgorithm::Sha2_384),
        ("sha2-512", HashAlgorithm::Sha2_512),
        ("sha3-224", HashAlgorithm::Sha3_224),
        ("sha3-256", HashAlgorithm::Sha3_256),
        ("sha3-384", HashAlgorithm::Sha3_384),
        ("sha3-512", HashAlgorithm::Sha3_512),
        ("none", HashAlgorithm::None),
    ];

    /// Parses a name such as `sha2-256`. `field` names the parameter in errors.
    pub(super) fn parse(field: &str, text: &str) -> Result<HashAlgorithm, Error> {
        HashAlgorithm::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, algorithm)| *algorithm)
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "unsupported {field} {text:?}: use sha2-224, sha2-256, sha2-384, sha2-512, \
                     sha3-224, sha3-256, sha3-384 or sha3-512"
                ))
            })
    }

    /// Parses the algorithm of `hash/` and `hmac/`, which take SHA-2 and SHA-3 only.
    pub(super) fn parse_sha2_or_sha3(field: &str, text: &str) -> Result<HashAlgorithm, Error> {
        match HashAlgorithm::parse(field, text)? {
            HashAlgorithm::Sha1 | HashAlgorithm::None => Err(Error::bad_request(format!(
                "unsupported {field} {text:?}: use a SHA-2 or SHA-3 algorithm such as sha2-256"
            ))),
            algorithm => Ok(algorithm),
        }
    }

    /// Hashes `input`. `None` returns the input itself.
    pub(super) fn digest(self, input: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha1 => sha1::Sha1::digest(input).to_vec(),
            HashAlgorithm::Sha2_224 => sha2::Sha224::digest(input).to_vec(),
            HashAlgorithm::Sha2_256 => sha2::Sha256::digest(input).to_vec(),
            HashAlgorithm::Sha2_384 => sha2::Sha384::digest(input).to_vec(),
            HashAlgorithm::Sha2_512 => sha2::Sha512::digest(input).to_vec(),
            HashAlgorithm::Sha3_224 => sha3::Sha3_224::digest(input).to_vec(),
            HashAlgorithm::Sha3_256 => sha3::Sha3_256::digest(input).to_vec(),
            HashAlgorithm::Sha3_384 => sha3::Sha3_384::digest(input).to_vec(),
            HashAlgorithm::Sha3_512 => sha3::Sha3_512::digest(input).to_vec(),
            HashAlgorithm::None => input.to_vec(),
        }
    }

    /// Computes the HMAC of `input` under `key`, or `None` for SHA-1 and `None`, which have none.
    pub(super) fn hmac(self, key: &[u8], input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let tag = match self {
            HashAlgorithm::Sha2_224 => mac::<sha2::Sha224>(key, input),
            HashAlgorithm::Sha2_256 => mac::<sha2::Sha256>(key, input),
            HashAlgorithm::Sha2_384 => mac::<sha2::Sha384>(key, input),
            HashAlgorithm::Sha2_512 => mac::<sha2::Sha512>(key, input),
            HashAlgorithm::Sha3_224 => mac::<sha3::Sha3_224>(key, input),
            HashAlgorithm::Sha3_256 => mac::<sha3::Sha3_256>(key, input),
            HashAlgorithm::Sha3_384 => mac::<sha3::Sha3_384>(key, input),
            HashAlgorithm::Sha3_512 => mac::<sha3::Sha3_512>(key, input),
            HashAlgorithm::Sha1 | HashAlgorithm::None => return None,
        };
        Some(Zeroizing::new(tag))
    }
}

fn mac<D: Digest + hmac::digest::core_api::BlockSizeUser>(key: &[u8], input: &[u8]) -> Vec<u8> {
    // SimpleHmac takes a key of any length, so this cannot fail.
    let mut mac =
        <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC accepts keys of every length");
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// Serves `hash[/<algorithm>]`: `{input, algorithm, format}` to `{sum}`.
pub(super) fn hash(
    url_algorithm: Option<&str>,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let Some(input) = params::string(data, "input")? else {
        return Err(Error::bad_request("missing input to hash"));
    };
    let input = decode_base64("input", &input)?;
    let algorithm = match url_algorithm {
        Some(name) => name.to_owned(),
        None => params::string(data, "algorithm")?.unwrap_or_else(|| "sha2-256".into()),
    };
    let algorithm = HashAlgorithm::parse_sha2_or_sha3("algorithm", &algorithm)?;
    let sum = algorithm.digest(&input);
    let format = params::string(data, "format")?.unwrap_or_else(|| "hex".into());
    let sum = encode_format(&format, &sum)?;
    Ok(Response::data_value(json!({ "sum": sum })))
}

/// Serves `random[/<source>][/<bytes>]`: `{bytes, format}` to `{random_bytes}`.
pub(super) fn random(
    rest: &str,
    data: &Map<String, Value>,
    rng: &mut dyn CryptoRngCore,
) -> Result<Response, Error> {
    let mut url_bytes = None;
    for segment in rest.split('/').filter(|segment| !segment.is_empty()) {
        match segment {
            "platform" | "seal" | "all" if url_bytes.is_none() => {}
            number => {
                let bytes = number.parse::<u64>().map_err(|_| {
                    Error::bad_request(format!(
                        "invalid random path segment {number:?}: expected a source (platform, \
                         seal or all) or a number of bytes"
                    ))
                })?;
                url_bytes = Some(bytes);
            }
        }
    }
    let count = match url_bytes {
        Some(bytes) => bytes,
        None => params::uint(data, "bytes")?.unwrap_or(32),
    };
    if count == 0 || count > MAX_RANDOM_BYTES {
        return Err(Error::bad_request(format!(
            "invalid bytes {count}: request between 1 and {MAX_RANDOM_BYTES} bytes"
        )));
    }
    let format = params::string(data, "format")?.unwrap_or_else(|| "base64".into());
    let length = usize::try_from(count).expect("count is at most 128 KiB");
    let mut bytes = Zeroizing::new(vec![0; length]);
    rng.fill_bytes(&mut bytes);
    let text = encode_format(&format, &bytes)?;
    Ok(Response::data_value(json!({ "random_bytes": text })))
}

fn encode_format(format: &str, bytes: &[u8]) -> Result<String, Error> {
    match format {
        "hex" => Ok(hex::encode(bytes)),
        "base64" => Ok(STANDARD.encode(bytes)),
        other => Err(Error::bad_request(format!(
            "unsupported encoding format {other:?}: use \"hex\" or \"base64\""
        ))),
    }
}
