//! Request fields the auth methods share, beyond those in [`crate::engines::params`].

use serde_json::{Map, Value};

use crate::error::Error;

/// A list of strings: a JSON array of strings or a comma-separated string, trimmed, with empty
/// items dropped. `None` when the field is absent or `null`.
pub(crate) fn string_list(
    data: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, Error> {
    let items: Vec<String> = match data.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.split(',').map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                _ => Err(invalid_list(field)),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid_list(field)),
    };
    Ok(Some(
        items
            .iter()
            .map(|item| item.trim())
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

/// Checks a user or role name from the path against Vault's pattern for them: word
/// characters, `-` and `.`, starting and ending with a word character.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), Error> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let valid = name.starts_with(word)
        && name.ends_with(word)
        && name.chars().all(|c| word(c) || c == '-' || c == '.');
    if valid {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "invalid {kind} name {name:?}: use letters, digits, \"_\", \"-\" and \".\", starting \
         and ending with a letter, digit or \"_\""
    )))
}

fn invalid_list(field: &str) -> Error {
    Error::bad_request(format!(
        "invalid value for {field}: expected a list of strings or a comma-separated string"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn string_list_accepts_comma_string_and_array() {
        let from_text = string_list(&data(json!({"p": " a, b ,,"})), "p").unwrap();
        assert_eq!(from_text, Some(vec!["a".to_owned(), "b".to_owned()]));
        let from_array = string_list(&data(json!({"p": ["a", " b"]})), "p").unwrap();
        assert_eq!(from_array, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(string_list(&data(json!({})), "p").unwrap(), None);
        assert!(string_list(&data(json!({"p": [1]})), "p").is_err());
    }

    #[test]
    fn names_follow_vault_pattern() {
        for name in ["alice", "a", "web-01.prod", "_x_"] {
            assert_eq!(check_name("user", name), Ok(()), "{name}");
        }
        for name in ["", "-a", "a.", "a/b", "a b", "ä"] {
            assert!(check_name("user", name).is_err(), "{name}");
        }
    }
}
