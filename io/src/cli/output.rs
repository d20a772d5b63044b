//! Output of the commands: aligned key/value tables, key lists and raw JSON.

use std::io::Write;

use serde_json::Value;

use super::error::CliError;

/// Output format of a command.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// The server's JSON response, unchanged.
    Json,
}

/// Picks the format from the flag, else VAULT_FORMAT, else `table`.
pub(crate) fn resolve_format(flag: Option<Format>) -> Result<Format, CliError> {
    if let Some(format) = flag {
        return Ok(format);
    }
    match std::env::var("VAULT_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("table") => Ok(Format::Table),
        Ok("json") => Ok(Format::Json),
        Ok(other) => Err(CliError::Local(format!(
            "invalid VAULT_FORMAT {other:?}: use table or json"
        ))),
    }
}

/// Prints one line to standard output. A closed pipe is not an error for a CLI.
pub(crate) fn print_line(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints one line to standard error.
pub(crate) fn print_error(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Prints a JSON value, indented.
pub(crate) fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_line(&text);
}

/// Renders rows under a `Key`/`Value` header with the values aligned in one column.
pub(crate) fn key_value_table(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(key, _)| key.chars().count())
        .chain([3])
        .max()
        .unwrap_or(3);
    let mut lines = vec![
        pad_row("Key", "Value", width),
        pad_row("---", "-----", width),
    ];
    lines.extend(rows.iter().map(|(key, value)| pad_row(key, value, width)));
    lines.join("\n")
}

/// Renders a `Keys` list, one key a line.
pub(crate) fn key_list(keys: &[String]) -> String {
    let mut lines = vec!["Keys".to_owned(), "----".to_owned()];
    lines.extend(keys.iter().cloned());
    lines.join("\n")
}

/// Renders rows under a header of any number of columns, each aligned to its widest cell.
pub(crate) fn columns_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rule = header.iter().map(|title| "-".repeat(title.len())).collect();
    let header = header.iter().map(|title| title.to_string()).collect();
    let all = [vec![header, rule], rows.to_vec()].concat();
    let count = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths = (0..count)
        .map(|column| {
            let cells = all.iter().filter_map(|row| row.get(column));
            cells.map(|cell| cell.chars().count()).max().unwrap_or(0)
        })
        .collect::<Vec<_>>();
    let lines = all.iter().map(|row| {
        let cells = row.iter().zip(&widths);
        let padded = cells.map(|(cell, width)| format!("{cell:<width$}"));
        padded
            .collect::<Vec<_>>()
            .join("    ")
            .trim_end()
            .to_owned()
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// Returns the rows of a JSON object, sorted by key.
pub(crate) fn object_rows(object: &Value) -> Vec<(String, String)> {
    let Some(map) = object.as_object() else {
        return Vec::new();
    };
    let mut rows = map
        .iter()
        .map(|(key, value)| (key.clone(), value_cell(value)))
        .collect::<Vec<_>>();
    rows.sort();
    rows
}

/// Formats one value for a table cell the way the Vault CLI prints Go values: strings bare,
/// lists as `[a b]`, objects as `map[k:v]`, null as `<nil>`.
pub(crate) fn value_cell(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_owned(),
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) => {
            let cells = items.iter().map(value_cell).collect::<Vec<_>>();
            format!("[{}]", cells.join(" "))
        }
        Value::Object(map) => {
            let mut cells = map
                .iter()
                .map(|(key, item)| format!("{key}:{}", value_cell(item)))
                .collect::<Vec<_>>();
            cells.sort();
            format!("map[{}]", cells.join(" "))
        }
    }
}

/// Formats seconds as the Vault CLI shows durations: `768h`, `1h30m`, `45s`, `0s`.
pub(crate) fn human_duration(seconds: u64) -> String {
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if secs > 0 || text.is_empty() {
        text.push_str(&format!("{secs}s"));
    }
    text
}

/// Returns the keys of a list response (`data.keys`), as strings.
pub(crate) fn list_keys(data: &Value) -> Vec<String> {
    let keys = data.get("keys").and_then(Value::as_array);
    keys.map(|keys| keys.iter().map(value_cell).collect())
        .unwrap_or_default()
}

fn pad_row(key: &str, value: &str, width: usize) -> String {
    format!("{key:<width$}    {value}").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let owned = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()));
        owned.collect()
    }

    #[test]
    fn key_value_table_aligns_values() {
        let table = key_value_table(&rows(&[("a", "1"), ("longer_key", "two")]));
        let expected = "Key           Value\n\
                        ---           -----\n\
                        a             1\n\
                        longer_key    two";
        assert_eq!(table, expected);
    }

    #[test]
    fn key_value_table_without_rows_has_header() {
        assert_eq!(key_value_table(&[]), "Key    Value\n---    -----");
    }

    #[test]
    fn empty_value_leaves_no_trailing_spaces() {
        let table = key_value_table(&rows(&[("cluster_name", "")]));
        assert!(table.ends_with("\ncluster_name"), "{table:?}");
    }

    #[test]
    fn columns_table_aligns_each_column() {
        let body = vec![
            vec!["cubbyhole/".to_owned(), "cubbyhole".to_owned()],
            vec!["kv/".to_owned(), "kv".to_owned()],
        ];
        let table = columns_table(&["Path", "Type"], &body);
        let expected = "Path          Type\n\
                        ----          ----\n\
                        cubbyhole/    cubbyhole\n\
                        kv/           kv";
        assert_eq!(table, expected);
    }

    #[test]
    fn value_cell_prints_go_style() {
        assert_eq!(value_cell(&json!("bar")), "bar");
        assert_eq!(value_cell(&json!(null)), "<nil>");
        assert_eq!(value_cell(&json!(3)), "3");
        assert_eq!(value_cell(&json!(true)), "true");
        assert_eq!(value_cell(&json!(["default", "web"])), "[default web]");
        assert_eq!(value_cell(&json!({"b": 1, "a": "x"})), "map[a:x b:1]");
    }

    #[test]
    fn object_rows_are_sorted_by_key() {
        let found = object_rows(&json!({"zeta": 1, "alpha": "a"}));
        assert_eq!(found, rows(&[("alpha", "a"), ("zeta", "1")]));
    }

    #[test]
    fn human_duration_drops_zero_units() {
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(90), "1m30s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(2_764_800), "768h");
        assert_eq!(human_duration(3661), "1h1m1s");
    }

    #[test]
    fn key_list_has_header() {
        let keys = list_keys(&json!({"keys": ["bar/", "foo"]}));
        assert_eq!(key_list(&keys), "Keys\n----\nbar/\nfoo");
    }
}
