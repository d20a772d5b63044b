//! Decoding request fields the way Vault's field parser does: numbers may arrive as JSON
//! numbers or as strings (query parameters are always strings), durations as seconds or Go
//! duration text.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::time::parse_duration;

/// An unsigned integer field, or `None` when absent or `null`.
pub fn uint(data: &Map<String, Value>, field: &str) -> Result<Option<u64>, Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => uint_value(value)
            .map(Some)
            .ok_or_else(|| invalid(field, "a non-negative integer")),
    }
}

/// A boolean field, accepting `true`/`false` and Go's spellings in strings (`1`, `t`, `TRUE`).
pub fn boolean(data: &Map<String, Value>, field: &str) -> Result<Option<bool>, Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) => match text.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(Some(false)),
            _ => Err(invalid(field, "a boolean")),
        },
        Some(_) => Err(invalid(field, "a boolean")),
    }
}

/// A duration field: integer seconds or a duration string such as `30m`.
pub fn duration(data: &Map<String, Value>, field: &str) -> Result<Option<Duration>, Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(Some(Duration::ZERO)),
        Some(Value::String(text)) => parse_duration(text)
            .map(Some)
            .map_err(|reason| Error::bad_request(format!("invalid {field}: {reason}"))),
        Some(value) => uint_value(value)
            .map(|seconds| Some(Duration::from_secs(seconds)))
            .ok_or_else(|| invalid(field, "a duration such as \"30m\" or whole seconds")),
    }
}

/// A string field.
pub fn string(data: &Map<String, Value>, field: &str) -> Result<Option<String>, Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(field, "a string")),
    }
}

/// A list of version numbers: a JSON array of numbers or numeric strings, or a
/// comma-separated string.
pub fn versions(data: &Map<String, Value>) -> Result<Vec<u64>, Error> {
    let parsed: Option<Vec<u64>> = match data.get("versions") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(uint_value).collect(),
        Some(Value::String(text)) => text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| part.trim().parse().ok())
            .collect(),
        Some(value) => uint_value(value).map(|version| vec![version]),
    };
    let versions = parsed.ok_or_else(|| invalid("versions", "a list of version numbers"))?;
    if versions.is_empty() {
        return Err(Error::bad_request("no version number provided"));
    }
    Ok(versions)
}

/// A map of string values, as `options` and `custom_metadata` are. Numbers and booleans are
/// turned into their text, because clients such as hvac send `{"version": 2}`.
pub fn string_map(
    data: &Map<String, Value>,
    field: &str,
) -> Result<Option<Map<String, Value>>, Error> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            let mut out = Map::new();
            for (key, value) in map {
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return Err(invalid(field, "a map of strings")),
                };
                out.insert(key.clone(), Value::String(text));
            }
            Ok(Some(out))
        }
        Some(_) => Err(invalid(field, "a map of strings")),
    }
}

fn uint_value(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

fn invalid(field: &str, expected: &str) -> Error {
    Error::bad_request(format!("invalid value for {field}: expected {expected}"))
}
