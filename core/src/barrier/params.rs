//! Reading request fields that may arrive as JSON values or, from query strings and form
//! bodies, as text.

use serde_json::{Map, Value};

use crate::error::Error;

/// Reads the integer field `name`, or `None` when absent or null.
pub(crate) fn integer(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, Error> {
    let parsed = match data.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| invalid(name, "a non-negative integer"))
}

/// Reads the integer field `name` as a share count or threshold (0 to 255), or `None` when
/// absent.
pub(crate) fn share_count(data: &Map<String, Value>, name: &str) -> Result<Option<u8>, Error> {
    match integer(data, name)? {
        None => Ok(None),
        Some(value) => u8::try_from(value)
            .map(Some)
            .map_err(|_| Error::bad_request(format!("{name} must be at most 255, got {value}"))),
    }
}

/// Reads the boolean field `name`, where absent or null is `false`. Text follows Go's
/// `strconv.ParseBool`.
pub(crate) fn boolean(data: &Map<String, Value>, name: &str) -> Result<bool, Error> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(Value::String(text)) => match text.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(invalid(name, "a boolean")),
        },
        Some(_) => Err(invalid(name, "a boolean")),
    }
}

/// Reads the string field `name`, where absent, null and empty are `None`.
pub(crate) fn string<'a>(
    data: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Error> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(invalid(name, "a string")),
    }
}

/// Checks whether the list field `name` has any non-empty entry. A comma-separated string counts as
/// a list, as Vault parses form bodies.
pub(crate) fn has_entries(data: &Map<String, Value>, name: &str) -> Result<bool, Error> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(text)) => Ok(text.split(',').any(|entry| !entry.trim().is_empty())),
        Some(Value::Array(entries)) => Ok(entries.iter().any(|entry| match entry {
            Value::String(text) => !text.is_empty(),
            Value::Null => false,
            _ => true,
        })),
        Some(_) => Err(invalid(name, "a list of strings")),
    }
}

fn invalid(name: &str, expected: &str) -> Error {
    Error::bad_request(format!("invalid value for {name}: expected {expected}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test data is an object"),
        }
    }

    #[test]
    fn integer_accepts_numbers_and_text() {
        let data = data(json!({"a": 5, "b": "7", "c": null, "d": "x", "e": -1}));
        assert_eq!(integer(&data, "a").unwrap(), Some(5));
        assert_eq!(integer(&data, "b").unwrap(), Some(7));
        assert_eq!(integer(&data, "c").unwrap(), None);
        assert_eq!(integer(&data, "missing").unwrap(), None);
        assert_eq!(integer(&data, "d").unwrap_err().status(), 400);
        assert_eq!(integer(&data, "e").unwrap_err().status(), 400);
    }

    #[test]
    fn share_count_rejects_values_above_255() {
        let data = data(json!({"n": 256}));
        let error = share_count(&data, "n").unwrap_err();
        assert_eq!(error, Error::bad_request("n must be at most 255, got 256"));
    }

    #[test]
    fn boolean_parses_go_spellings() {
        let data = data(json!({"a": true, "b": "1", "c": "false", "d": "maybe"}));
        assert!(boolean(&data, "a").unwrap());
        assert!(boolean(&data, "b").unwrap());
        assert!(!boolean(&data, "c").unwrap());
        assert!(!boolean(&data, "missing").unwrap());
        assert_eq!(boolean(&data, "d").unwrap_err().status(), 400);
    }

    #[test]
    fn empty_lists_have_no_entries() {
        let data = data(json!({"a": [], "b": [""], "c": null, "d": ["key"], "e": "k1,k2"}));
        assert!(!has_entries(&data, "a").unwrap());
        assert!(!has_entries(&data, "b").unwrap());
        assert!(!has_entries(&data, "c").unwrap());
        assert!(has_entries(&data, "d").unwrap());
        assert!(has_entries(&data, "e").unwrap());
    }
}
