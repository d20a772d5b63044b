//! The transit secrets engine: named, versioned keys that encrypt, decrypt, sign, verify and
//! HMAC data the engine itself never stores.
//!
//! Each key is one [`key::Policy`] record behind the barrier. Only key management (`keys/...`),
//! `restore/` and the on-the-fly creation of a missing key by `encrypt/` write to storage.
//! Every other endpoint only reads, so it runs on the read-only snapshot, and on a secondary,
//! without being forwarded.

mod aead;
mod backup;
mod crypt;
mod export;
mod hashing;
mod key;
mod manage;
mod sign;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Logical, Operation, Request, Response};
use crate::time::Timestamp;

use super::Location;

/// Serves a request for `path` below a transit mount at `location`.
pub(crate) fn handle(
    now: Timestamp,
    request: &Request,
    path: &str,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let path = path.trim_end_matches('/');
    let (head, rest) = path.split_once('/').unwrap_or((path, ""));
    let operation = request.operation;
    let data = &request.data;
    if head == "keys" {
        return manage::handle(now, operation, rest, data, location, view);
    }
    if head == "export" {
        return match operation {
            Operation::Read => export::handle(rest, location, view),
            _ => Err(Error::unsupported_operation()),
        };
    }
    if head == "backup" {
        return match operation {
            Operation::Read => backup::backup(key_name(rest)?, location, view),
            _ => Err(Error::unsupported_operation()),
        };
    }
    if operation != Operation::Update {
        return Err(Error::unsupported_operation());
    }
    match head {
        "encrypt" => crypt::encrypt(now, key_name(rest)?, data, location, view),
        "decrypt" => crypt::decrypt(key_name(rest)?, data, location, view),
        "rewrap" => crypt::rewrap(key_name(rest)?, data, location, view),
        "datakey" => {
            let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
            crypt::datakey(kind, key_name(name)?, data, location, view)
        }
        "hmac" => {
            let (name, algorithm) = split_suffix(rest);
            sign::hmac(key_name(name)?, algorithm, data, location, view)
        }
        "sign" => {
            let (name, algorithm) = split_suffix(rest);
            sign::sign(key_name(name)?, algorithm, data, location, view)
        }
        "verify" => {
            let (name, algorithm) = split_suffix(rest);
            sign::verify(key_name(name)?, algorithm, data, location, view)
        }
        "restore" => backup::restore(non_empty(rest), data, location, view),
        "hash" => hashing::hash(non_empty(rest), data),
        "random" => hashing::random(rest, data, view.rng()),
        _ => Err(Error::no_handler(&request.path)),
    }
}

/// Returns the storage key whose presence decides whether a write to `path` creates a key.
/// Only `keys/:name` and `encrypt/:name` have one, because `encrypt/` creates a missing key.
pub(crate) fn existence_key(location: &Location, path: &str) -> Option<String> {
    let path = path.trim_end_matches('/');
    let (head, name) = path.split_once('/')?;
    match head {
        "keys" | "encrypt" if valid_name(name) => Some(key::existence_key(location, name)),
        _ => None,
    }
}

/// Checks a key name as Vault does: word characters, `-` and `.`, starting and ending with a
/// word character.
fn key_name(name: &str) -> Result<&str, Error> {
    if valid_name(name) {
        return Ok(name);
    }
    Err(Error::bad_request(format!(
        "invalid key name {name:?}: use letters, digits, '_', '-' and '.', starting and ending \
         with a letter, digit or '_'"
    )))
}

fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    word(first) && word(last) && name.chars().all(|c| word(c) || c == '-' || c == '.')
}

/// Splits `name/suffix` into the name and the optional suffix (an algorithm in the URL).
fn split_suffix(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((name, suffix)) => (name, non_empty(suffix)),
        None => (rest, None),
    }
}

fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Runs `item` once on the request data, or on each entry of `batch_input`.
///
/// A single request fails with the item's error. In a batch each failed item gets an `error`
/// entry in `batch_results` in its place. The response is then a 400, or the
/// `partial_failure_response_code` when some items succeeded, as in Vault. Storage errors
/// always fail the whole request, because they mean the request must run elsewhere.
fn run_batch(
    data: &Map<String, Value>,
    mut item: impl FnMut(&Map<String, Value>) -> Result<Map<String, Value>, Error>,
) -> Result<Response, Error> {
    let Some(batch) = batch_input(data)? else {
        return item(data).map(Response::data);
    };
    let mut results = Vec::with_capacity(batch.len());
    let (mut successes, mut failures) = (0, 0);
    for entry in batch {
        let outcome = match entry {
            Value::Object(fields) => item(fields),
            _ => Err(Error::bad_request(
                "invalid batch item: each entry of batch_input must be an object",
            )),
        };
        let mut result = match outcome {
            Ok(result) => {
                successes += 1;
                result
            }
            Err(Error::Api { messages, .. }) => {
                failures += 1;
                let mut result = Map::new();
                result.insert("error".into(), json!(messages.join("; ")));
                result
            }
            Err(error) => return Err(error),
        };
        if let Some(reference) = entry.get("reference") {
            result.insert("reference".into(), reference.clone());
        }
        results.push(Value::Object(result));
    }
    let mut response = Map::new();
    response.insert("batch_results".into(), Value::Array(results));
    let mut logical = Logical::with_data(response);
    if failures > 0 {
        logical.status = 400;
        if successes > 0 {
            if let Some(code) = super::params::uint(data, "partial_failure_response_code")? {
                logical.status = partial_failure_code(code)?;
            }
        }
    }
    Ok(Response::logical(logical))
}

fn batch_input(data: &Map<String, Value>) -> Result<Option<&Vec<Value>>, Error> {
    match data.get("batch_input") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(Error::bad_request("invalid batch_input: the list is empty"))
        }
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(Error::bad_request(
            "invalid batch_input: expected a list of objects",
        )),
    }
}

fn partial_failure_code(code: u64) -> Result<u16, Error> {
    match u16::try_from(code) {
        Ok(code @ 1..=599) => Ok(code),
        _ => Err(Error::bad_request(format!(
            "invalid partial_failure_response_code {code}: use an HTTP status between 1 and 599"
        ))),
    }
}

/// Returns the first batch item, or the request itself, for settings a batch shares such as
/// the context of a key created on the fly.
fn first_item(data: &Map<String, Value>) -> &Map<String, Value> {
    match data.get("batch_input") {
        Some(Value::Array(items)) => items.first().and_then(Value::as_object).unwrap_or(data),
        _ => data,
    }
}

/// A key version field such as `key_version`, or 0 when absent.
fn version_field(data: &Map<String, Value>, field: &str) -> Result<u32, Error> {
    let version = super::params::uint(data, field)?.unwrap_or(0);
    u32::try_from(version)
        .map_err(|_| Error::bad_request(format!("invalid {field} {version}: no such version")))
}
