//! Reading typed values out of config attributes, with errors that name the setting.

use std::net::SocketAddr;
use std::time::Duration;

use coffer_core::time::parse_duration;
use serde_json::Value;

use super::ConfigError;

fn invalid(key: &str, value: &Value, expected: &str) -> ConfigError {
    ConfigError::Invalid(format!("{key} = {value} is invalid: expected {expected}"))
}

pub(super) fn string_value(key: &str, value: &Value) -> Result<String, ConfigError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        other => Err(invalid(key, other, "a string")),
    }
}

/// Reads a boolean, also given as Go's bool strings (`"1"`, `"true"`, `"0"`, `"false"`, ...).
pub(super) fn bool_value(key: &str, value: &Value) -> Result<bool, ConfigError> {
    let expected = "true, false, \"1\" or \"0\"";
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::Number(number) if number.as_u64() == Some(1) => Ok(true),
        Value::Number(number) if number.as_u64() == Some(0) => Ok(false),
        Value::String(text) => match text.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(invalid(key, value, expected)),
        },
        other => Err(invalid(key, other, expected)),
    }
}

/// Reads a duration string such as `"768h"`, or whole seconds.
pub(super) fn duration_value(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    let expected = "a duration such as \"768h\", \"30m\" or a number of seconds";
    match value {
        Value::Number(number) => number
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| invalid(key, value, expected)),
        Value::String(text) => parse_duration(text)
            .map_err(|error| ConfigError::Invalid(format!("{key} = {value} is invalid: {error}"))),
        other => Err(invalid(key, other, expected)),
    }
}

/// Reads a non-negative integer, also given as a string of digits.
pub(super) fn u64_value(key: &str, value: &Value) -> Result<u64, ConfigError> {
    let expected = "a non-negative integer";
    match value {
        Value::Number(number) => number.as_u64().ok_or_else(|| invalid(key, value, expected)),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| invalid(key, value, expected)),
        other => Err(invalid(key, other, expected)),
    }
}

/// Reads an `IP:port` address.
pub(super) fn socket_addr(key: &str, value: &Value) -> Result<SocketAddr, ConfigError> {
    string_value(key, value)?
        .parse()
        .map_err(|_| invalid(key, value, "an IP:port address such as \"127.0.0.1:8200\""))
}
