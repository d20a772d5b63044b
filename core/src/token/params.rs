//! Typed access to request fields, accepting the loose forms Vault clients send.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::time::parse_duration;

/// Reads a string field; numbers are accepted as their text.
pub(super) fn string(data: &Map<String, Value>, key: &str) -> Result<Option<String>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(invalid(key, "a string")),
    }
}

/// Reads a boolean field; the strings `true`, `1`, `false` and `0` (any case) are accepted too.
pub(super) fn boolean(data: &Map<String, Value>, key: &str) -> Result<Option<bool>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => Ok(Some(true)),
            "false" | "0" | "f" | "" => Ok(Some(false)),
            _ => Err(invalid(key, "a boolean")),
        },
        Some(_) => Err(invalid(key, "a boolean")),
    }
}

/// Reads a non-negative integer field.
pub(super) fn integer(data: &Map<String, Value>, key: &str) -> Result<Option<u64>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(key, "a non-negative integer")),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| invalid(key, "a non-negative integer")),
        Some(_) => Err(invalid(key, "a non-negative integer")),
    }
}

/// The longest duration accepted, in seconds: Go's `time.Duration`, which Vault parses
/// durations into, holds at most `i64::MAX` nanoseconds (about 292 years).
const MAX_DURATION_SECS: u64 = 9_223_372_036;

/// Reads a duration field: integer seconds or a duration string such as `30m`. Durations
/// longer than [`MAX_DURATION_SECS`] are rejected.
pub(super) fn duration(data: &Map<String, Value>, key: &str) -> Result<Option<Duration>, Error> {
    let value = any_duration(data, key)?;
    if let Some(duration) = value.filter(|duration| duration.as_secs() > MAX_DURATION_SECS) {
        return Err(Error::bad_request(format!(
            "invalid {key}: {} seconds is out of range; the maximum is {MAX_DURATION_SECS} \
             seconds (about 292 years)",
            duration.as_secs()
        )));
    }
    Ok(value)
}

fn any_duration(data: &Map<String, Value>, key: &str) -> Result<Option<Duration>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .map(|seconds| Some(Duration::from_secs(seconds)))
            .ok_or_else(|| invalid(key, "a non-negative number of seconds or a duration")),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => parse_duration(text)
            .map(Some)
            .map_err(|reason| Error::bad_request(format!("invalid {key}: {reason}"))),
        Some(_) => Err(invalid(
            key,
            "a number of seconds or a duration such as \"30m\"",
        )),
    }
}

/// Reads a list of strings; a comma-separated string is accepted too.
pub(super) fn string_list(
    data: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.trim().to_owned()),
                _ => Err(invalid(key, "a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(key, "a list of strings")),
    }
}

/// Reads a map from strings to strings.
pub(super) fn string_map(
    data: &Map<String, Value>,
    key: &str,
) -> Result<BTreeMap<String, String>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                _ => Err(invalid(key, "an object of string values")),
            })
            .collect(),
        Some(_) => Err(invalid(key, "an object of string values")),
    }
}

fn invalid(key: &str, expected: &str) -> Error {
    Error::bad_request(format!("invalid value for {key:?}: expected {expected}"))
}
