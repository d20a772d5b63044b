//! The rows the Vault CLI prints for a response: lease, token and data fields.

use serde_json::Value;

use super::error::CliError;
use super::output::{human_duration, object_rows, value_cell};

/// Returns the rows of a response envelope: a wrapped response's `wrapping_*` fields, or lease
/// fields first, then the token of an `auth` block, then the fields of `data` sorted by key.
pub(crate) fn secret_rows(body: &Value) -> Vec<(String, String)> {
    if let Some(wrap) = body.get("wrap_info").filter(|wrap| wrap.is_object()) {
        return wrap_rows(wrap);
    }
    let mut rows = lease_rows(body);
    if let Some(auth) = body.get("auth").filter(|auth| auth.is_object()) {
        rows.extend(auth_rows(auth));
    }
    rows.extend(object_rows(body.get("data").unwrap_or(&Value::Null)));
    rows
}

/// Returns the value of one row, for `-field`.
pub(crate) fn field_value(rows: &[(String, String)], field: &str) -> Result<String, CliError> {
    // Wrapped responses label their rows `wrapping_token:` and so on, as Vault does.
    let found = rows
        .iter()
        .find(|(key, _)| key.trim_end_matches(':') == field);
    found.map(|(_, value)| value.clone()).ok_or_else(|| {
        CliError::Local(format!(
            "field {field:?} not present in the response: drop -field to see every field"
        ))
    })
}

/// Returns the rows the Vault CLI prints for a wrapped response.
fn wrap_rows(wrap: &Value) -> Vec<(String, String)> {
    let field = |name: &str| value_cell(wrap.get(name).unwrap_or(&Value::Null));
    let ttl = wrap.get("ttl").and_then(Value::as_u64).unwrap_or(0);
    let mut rows = vec![
        ("wrapping_token:".to_owned(), field("token")),
        ("wrapping_accessor:".to_owned(), field("accessor")),
        ("wrapping_token_ttl:".to_owned(), human_duration(ttl)),
        (
            "wrapping_token_creation_time:".to_owned(),
            field("creation_time"),
        ),
        (
            "wrapping_token_creation_path:".to_owned(),
            field("creation_path"),
        ),
    ];
    if wrap
        .get("wrapped_accessor")
        .and_then(Value::as_str)
        .is_some_and(|accessor| !accessor.is_empty())
    {
        rows.push(("wrapped_accessor:".to_owned(), field("wrapped_accessor")));
    }
    rows
}

fn lease_rows(body: &Value) -> Vec<(String, String)> {
    let lease_id = body.get("lease_id").and_then(Value::as_str).unwrap_or("");
    let duration = body
        .get("lease_duration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if !lease_id.is_empty() {
        let renewable = body.get("renewable").unwrap_or(&Value::Bool(false));
        return vec![
            ("lease_id".to_owned(), lease_id.to_owned()),
            ("lease_duration".to_owned(), human_duration(duration)),
            ("lease_renewable".to_owned(), value_cell(renewable)),
        ];
    }
    if duration > 0 {
        return vec![("refresh_interval".to_owned(), human_duration(duration))];
    }
    Vec::new()
}

fn auth_rows(auth: &Value) -> Vec<(String, String)> {
    let field = |name: &str| value_cell(auth.get(name).unwrap_or(&Value::Null));
    let duration = auth
        .get("lease_duration")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let duration = if duration == 0 {
        "∞".to_owned()
    } else {
        human_duration(duration)
    };
    let mut rows = vec![
        ("token".to_owned(), field("client_token")),
        ("token_accessor".to_owned(), field("accessor")),
        ("token_duration".to_owned(), duration),
        ("token_renewable".to_owned(), field("renewable")),
        ("token_policies".to_owned(), field("token_policies")),
        ("identity_policies".to_owned(), field("identity_policies")),
        ("policies".to_owned(), field("policies")),
    ];
    // Like Vault, leave out identity policies when the token has none.
    let has_identity_policies = auth
        .get("identity_policies")
        .and_then(Value::as_array)
        .is_some_and(|policies| !policies.is_empty());
    if !has_identity_policies {
        rows.retain(|(key, _)| key != "identity_policies");
    }
    rows
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wrapped_response_shows_wrapping_rows() {
        let body = json!({"data": null, "wrap_info": {"token": "eyJ.a.b", "accessor": "acc",
                          "ttl": 1800, "creation_time": "2026-12-04T00:00:00Z",
                          "creation_path": "sys/x"}});
        let rows = secret_rows(&body);
        let keys: Vec<&str> = rows.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "wrapping_token:",
                "wrapping_accessor:",
                "wrapping_token_ttl:",
                "wrapping_token_creation_time:",
                "wrapping_token_creation_path:"
            ]
        );
        assert_eq!(field_value(&rows, "wrapping_token").unwrap(), "eyJ.a.b");
        assert_eq!(field_value(&rows, "wrapping_token_ttl").unwrap(), "30m");
    }

    #[test]
    fn kv_read_shows_refresh_interval_then_data() {
        let body = json!({"lease_id": "", "lease_duration": 2764800, "renewable": false,
                          "data": {"foo": "bar", "baz": "1"}});
        let keys = secret_rows(&body)
            .into_iter()
            .map(|(key, _)| key)
            .collect::<Vec<_>>();
        assert_eq!(keys, ["refresh_interval", "baz", "foo"]);
        assert_eq!(secret_rows(&body)[0].1, "768h");
    }

    #[test]
    fn leased_secret_shows_lease_fields() {
        let body = json!({"lease_id": "pki/issue/x/abc", "lease_duration": 60, "renewable": true,
                          "data": null});
        let rows = secret_rows(&body);
        assert_eq!(
            rows[0],
            ("lease_id".to_owned(), "pki/issue/x/abc".to_owned())
        );
        assert_eq!(rows[1], ("lease_duration".to_owned(), "1m".to_owned()));
        assert_eq!(rows[2], ("lease_renewable".to_owned(), "true".to_owned()));
    }

    #[test]
    fn token_response_shows_token_rows() {
        let body = json!({"lease_duration": 0, "data": null, "auth": {
            "client_token": "hvs.x", "accessor": "acc", "lease_duration": 3600,
            "renewable": true, "token_policies": ["default", "web"], "policies": ["default", "web"]}});
        let rows = secret_rows(&body);
        assert_eq!(field_value(&rows, "token").ok().as_deref(), Some("hvs.x"));
        assert_eq!(
            field_value(&rows, "token_duration").ok().as_deref(),
            Some("1h")
        );
        assert_eq!(
            field_value(&rows, "policies").ok().as_deref(),
            Some("[default web]")
        );
    }

    #[test]
    fn missing_field_is_an_error() {
        assert!(field_value(&[], "nope").is_err());
    }
}
