//! The response shapes of token creation, renewal and lookup.

use serde_json::{Map, Value, json};

use super::store::TokenEntry;
use crate::request::{Auth, Logical, Response, Secret};
use crate::time::Timestamp;

/// Builds the `auth` envelope of a create or renew, with no `data`.
pub(super) fn auth_response(token: &Secret, entry: &TokenEntry, warnings: Vec<String>) -> Response {
    let metadata = (!entry.meta.is_empty()).then(|| {
        entry
            .meta
            .iter()
            .map(|(key, value)| (key.clone(), Value::String(value.clone())))
            .collect::<Map<String, Value>>()
    });
    let auth = Auth {
        client_token: token.clone(),
        accessor: entry.accessor.clone(),
        policies: entry.policies.clone(),
        token_policies: entry.policies.clone(),
        metadata,
        lease_duration: entry.ttl,
        renewable: entry.renewable,
        entity_id: String::new(),
        token_type: entry.token_type.clone(),
        orphan: entry.orphan,
        num_uses: entry.num_uses,
        mfa_requirement: None,
    };
    Response::logical(Logical {
        status: 200,
        auth: Some(auth),
        warnings,
        ..Logical::default()
    })
}

/// Builds the `data` of a lookup. `id` is the token when the caller presented it, and empty for a
/// lookup by accessor.
pub(super) fn lookup_data(entry: &TokenEntry, id: &str, now: Timestamp) -> Map<String, Value> {
    let meta = if entry.meta.is_empty() {
        Value::Null
    } else {
        json!(entry.meta)
    };
    let fields = [
        ("accessor", json!(entry.accessor)),
        ("creation_time", json!(entry.creation_time.as_secs())),
        ("creation_ttl", json!(entry.creation_ttl)),
        ("display_name", json!(entry.display_name)),
        ("entity_id", json!("")),
        (
            "expire_time",
            json!(entry.expire_time.map(Timestamp::to_rfc3339)),
        ),
        ("explicit_max_ttl", json!(entry.explicit_max_ttl)),
        ("id", json!(id)),
        ("meta", meta),
        ("num_uses", json!(entry.num_uses)),
        ("orphan", json!(entry.orphan)),
        ("path", json!(entry.path)),
        ("policies", json!(entry.policies)),
        ("ttl", json!(entry.remaining_ttl(now))),
        ("type", json!(entry.token_type)),
    ];
    let mut map: Map<String, Value> = fields
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
    if entry.expire_time.is_some() {
        map.insert("issue_time".into(), json!(entry.creation_time.to_rfc3339()));
        map.insert("renewable".into(), json!(entry.renewable));
    }
    if let Some(renewed) = entry.last_renewal_time {
        map.insert("last_renewal_time".into(), json!(renewed.as_secs()));
        map.insert("last_renewal".into(), json!(renewed.to_rfc3339()));
    }
    if !entry.role.is_empty() {
        map.insert("role".into(), json!(entry.role));
    }
    if entry.period > 0 {
        map.insert("period".into(), json!(entry.period));
    }
    map
}
