//! Parsing of `key=value` arguments into a JSON object, as `vault write` and `vault kv put` do.
//!
//! `key=value` sets a string, `key=@FILE` reads the value from a file, `key=-` reads it from
//! standard input, and a bare `-` or `@FILE` merges a JSON object from standard input or a file.
//! A key given twice becomes a list of its values.

use serde_json::{Map, Value};

use super::error::CliError;

/// Source of file and standard-input contents, so tests can pass fakes.
pub(crate) trait Sources {
    /// Returns the contents of the file at `path`.
    fn file(&mut self, path: &str) -> Result<String, CliError>;
    /// Returns all of standard input.
    fn stdin(&mut self) -> Result<String, CliError>;
}

/// Real files and the process's standard input, which it reads at most once.
pub(crate) struct ProcessSources {
    stdin_used: bool,
}

impl ProcessSources {
    pub(crate) fn new() -> ProcessSources {
        ProcessSources { stdin_used: false }
    }
}

impl Sources for ProcessSources {
    fn file(&mut self, path: &str) -> Result<String, CliError> {
        std::fs::read_to_string(path)
            .map_err(|error| CliError::Local(format!("failed to read file {path}: {error}")))
    }

    fn stdin(&mut self) -> Result<String, CliError> {
        if self.stdin_used {
            return Err(CliError::Local(
                "standard input can be read only once: use `-` for one argument only".to_owned(),
            ));
        }
        self.stdin_used = true;
        super::read_stdin()
    }
}

/// Parses the arguments into one JSON object of the data to send.
pub(crate) fn parse_pairs(
    args: &[String],
    sources: &mut dyn Sources,
) -> Result<Map<String, Value>, CliError> {
    let mut data = Map::new();
    for arg in args {
        if arg == "-" {
            merge_json(&mut data, &sources.stdin()?, "standard input")?;
        } else if let Some(path) = arg.strip_prefix('@') {
            merge_json(&mut data, &sources.file(path)?, path)?;
        } else {
            let (key, value) = split_pair(arg)?;
            let value = resolve_value(value, sources)?;
            insert_value(&mut data, key, Value::String(value));
        }
    }
    Ok(data)
}

fn split_pair(arg: &str) -> Result<(&str, &str), CliError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(CliError::Local(format!(
            "invalid key/value pair {arg:?}: the format is key=value"
        ))),
    }
}

fn resolve_value(value: &str, sources: &mut dyn Sources) -> Result<String, CliError> {
    if value == "-" {
        return sources.stdin();
    }
    match value.strip_prefix('@') {
        Some(path) => sources.file(path),
        None => Ok(value.to_owned()),
    }
}

/// Adds a value; a repeated key turns into a list of every value given for it.
fn insert_value(data: &mut Map<String, Value>, key: &str, value: Value) {
    match data.get_mut(key) {
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
        None => {
            data.insert(key.to_owned(), value);
        }
    }
}

fn merge_json(data: &mut Map<String, Value>, text: &str, origin: &str) -> Result<(), CliError> {
    let parsed: Value = serde_json::from_str(text)
        .map_err(|error| CliError::Local(format!("invalid JSON in {origin}: {error}")))?;
    let Value::Object(object) = parsed else {
        return Err(CliError::Local(format!(
            "invalid JSON in {origin}: expected an object of keys and values"
        )));
    };
    data.extend(object);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct FakeSources {
        files: BTreeMap<String, String>,
        stdin: String,
    }

    impl Sources for FakeSources {
        fn file(&mut self, path: &str) -> Result<String, CliError> {
            let found = self.files.get(path).cloned();
            found.ok_or_else(|| CliError::Local(format!("no file {path}")))
        }

        fn stdin(&mut self) -> Result<String, CliError> {
            Ok(self.stdin.clone())
        }
    }

    fn parse(args: &[&str], sources: &mut FakeSources) -> Result<Value, CliError> {
        let args = args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>();
        parse_pairs(&args, sources).map(Value::Object)
    }

    #[test]
    fn pairs_become_strings() {
        let data = parse(&["foo=bar", "n=1", "empty="], &mut FakeSources::default());
        assert_eq!(
            data.ok(),
            Some(json!({"foo": "bar", "n": "1", "empty": ""}))
        );
    }

    #[test]
    fn value_keeps_later_equals_signs() {
        let data = parse(&["url=a=b=c"], &mut FakeSources::default());
        assert_eq!(data.ok(), Some(json!({"url": "a=b=c"})));
    }

    #[test]
    fn at_value_reads_file() {
        let mut sources = FakeSources::default();
        sources
            .files
            .insert("cert.pem".to_owned(), "PEM\n".to_owned());
        let data = parse(&["cert=@cert.pem"], &mut sources);
        assert_eq!(data.ok(), Some(json!({"cert": "PEM\n"})));
    }

    #[test]
    fn dash_value_reads_stdin() {
        let mut sources = FakeSources {
            stdin: "s3cret".to_owned(),
            ..FakeSources::default()
        };
        let data = parse(&["password=-"], &mut sources);
        assert_eq!(data.ok(), Some(json!({"password": "s3cret"})));
    }

    #[test]
    fn bare_dash_merges_json_from_stdin() {
        let mut sources = FakeSources {
            stdin: r#"{"a": 1, "b": {"c": true}}"#.to_owned(),
            ..FakeSources::default()
        };
        let data = parse(&["-", "d=x"], &mut sources);
        assert_eq!(data.ok(), Some(json!({"a": 1, "b": {"c": true}, "d": "x"})));
    }

    #[test]
    fn bare_at_merges_json_file() {
        let mut sources = FakeSources::default();
        sources
            .files
            .insert("d.json".to_owned(), r#"{"k": [1, 2]}"#.to_owned());
        let data = parse(&["@d.json"], &mut sources);
        assert_eq!(data.ok(), Some(json!({"k": [1, 2]})));
    }

    #[test]
    fn repeated_key_becomes_list() {
        let data = parse(&["p=a", "p=b", "p=c"], &mut FakeSources::default());
        assert_eq!(data.ok(), Some(json!({"p": ["a", "b", "c"]})));
    }

    #[test]
    fn pair_without_equals_is_rejected() {
        let error = parse(&["novalue"], &mut FakeSources::default()).err();
        let message = error.map(|error| error.to_string()).unwrap_or_default();
        assert!(message.contains("\"novalue\""), "{message}");
        assert!(message.contains("key=value"), "{message}");
    }

    #[test]
    fn empty_key_is_rejected() {
        assert!(parse(&["=v"], &mut FakeSources::default()).is_err());
    }

    #[test]
    fn non_object_json_is_rejected() {
        let mut sources = FakeSources {
            stdin: "[1, 2]".to_owned(),
            ..FakeSources::default()
        };
        assert!(parse(&["-"], &mut sources).is_err());
    }

    #[test]
    fn process_stdin_is_read_once() {
        let mut sources = ProcessSources::new();
        sources.stdin_used = true;
        assert!(sources.stdin().is_err());
    }
}
