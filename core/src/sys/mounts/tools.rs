//! `sys/tools/random` and `sys/tools/hash`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Operation, Request, Response};

/// The maximum number of random bytes one request may request.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// Serves `tools/<tool>`, or returns `None` for an unknown tool.
pub(super) fn route(
    ctx: &mut Ctx<'_>,
    request: &Request,
    tool: &str,
) -> Option<Result<Response, Error>> {
    let (name, argument) = tool.split_once('/').unwrap_or((tool, ""));
    let result = match name {
        "random" | "hash" if request.operation != Operation::Update => {
            Err(Error::unsupported_operation())
        }
        "random" => random(ctx, &request.data, argument),
        "hash" => hash(&request.data, argument),
        _ => return None,
    };
    Some(result)
}

/// Returns `bytes` random bytes (32 by default) as base64 or hex. The path may carry the
/// count, optionally after a source name such as `platform/`.
fn random(ctx: &mut Ctx<'_>, data: &Map<String, Value>, argument: &str) -> Result<Response, Error> {
    let from_path = argument
        .rsplit('/')
        .next()
        .filter(|count| !count.is_empty());
    let count = match from_path.filter(|count| count.bytes().all(|b| b.is_ascii_digit())) {
        Some(count) => count.parse::<u64>().ok(),
        None => params::uint(data, "bytes")?,
    }
    .unwrap_or(32);
    if count == 0 || count > MAX_RANDOM_BYTES {
        return Err(Error::bad_request(format!(
            "invalid number of bytes {count}: ask for 1 to {MAX_RANDOM_BYTES}"
        )));
    }
    let length = usize::try_from(count).map_err(|_| Error::bad_request("too many bytes"))?;
    let mut bytes = vec![0u8; length];
    ctx.rng.fill_bytes(&mut bytes);
    let format = params::string(data, "format")?.unwrap_or_else(|| "base64".into());
    let encoded = encode(&bytes, &format)?;
    Ok(Response::data(single("random_bytes", encoded)))
}

/// Hashes the base64 `input` with a SHA-2 function (SHA2-256 by default).
fn hash(data: &Map<String, Value>, argument: &str) -> Result<Response, Error> {
    let input = params::string(data, "input")?
        .ok_or_else(|| Error::bad_request("missing input: pass the data to hash as base64"))?;
    let input = STANDARD
        .decode(input.as_bytes())
        .map_err(|error| Error::bad_request(format!("invalid input: not base64: {error}")))?;
    let algorithm = match argument {
        "" => params::string(data, "algorithm")?.unwrap_or_else(|| "sha2-256".into()),
        named => named.to_owned(),
    };
    let sum = match algorithm.as_str() {
        "sha2-224" => Sha224::digest(&input).to_vec(),
        "sha2-256" => Sha256::digest(&input).to_vec(),
        "sha2-384" => Sha384::digest(&input).to_vec(),
        "sha2-512" => Sha512::digest(&input).to_vec(),
        other => {
            return Err(Error::bad_request(format!(
                "unsupported algorithm {other:?}: use sha2-224, sha2-256, sha2-384 or sha2-512"
            )));
        }
    };
    let format = params::string(data, "format")?.unwrap_or_else(|| "hex".into());
    Ok(Response::data(single("sum", encode(&sum, &format)?)))
}

fn encode(bytes: &[u8], format: &str) -> Result<String, Error> {
    match format {
        "hex" => Ok(hex::encode(bytes)),
        "base64" => Ok(STANDARD.encode(bytes)),
        other => Err(Error::bad_request(format!(
            "unsupported format {other:?}: use hex or base64"
        ))),
    }
}

fn single(field: &str, value: String) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert(field.into(), json!(value));
    data
}
