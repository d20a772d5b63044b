//! Building audit entries: Vault's JSON shape with sensitive values hashed.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::device::{AuditDevice, HmacKey};
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Auth, Logical, Request, Response, Secret, WrapInfo};
use crate::storage::Transaction;
use crate::time::Timestamp;

/// The caller's token as an audit entry shows it, read before the request runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditAuth {
    /// The client token, which entries show only hashed.
    pub client_token: Secret,
    /// Its accessor, hashed unless the device sets `hmac_accessor=false`.
    pub accessor: String,
    /// The display name recorded at creation.
    pub display_name: String,
    /// The token's policies.
    pub policies: Vec<String>,
    /// Metadata such as `{"username": "alice"}`, shown as stored.
    pub metadata: BTreeMap<String, String>,
    /// `service` or `batch`.
    pub token_type: String,
    /// The TTL given at creation, in seconds.
    pub token_ttl: u64,
    /// When the token was created.
    pub token_issue_time: Timestamp,
}

/// One entry for one device: its file and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLine {
    /// The device path, such as `file/`.
    pub device: String,
    /// Whether the device is local to this node rather than replicated.
    pub local: bool,
    /// The file the line is appended to.
    pub file_path: String,
    /// The permission bits of the file when it has to be created.
    pub file_mode: u32,
    /// The device's prefix and the JSON entry, without a line break.
    pub text: String,
}

/// Reads the request's token, when it has one that exists, without spending a use.
pub(super) fn lookup_auth(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Option<AuditAuth>, Error> {
    let Some(token) = &request.token else {
        return Ok(None);
    };
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let Some(entry) = crate::token::find_entry(&view, token.expose())? else {
        return Ok(None);
    };
    Ok(Some(AuditAuth {
        client_token: token.clone(),
        accessor: entry.accessor,
        display_name: entry.display_name,
        policies: entry.policies,
        metadata: entry.meta,
        token_type: entry.token_type,
        token_ttl: entry.creation_ttl,
        token_issue_time: entry.creation_time,
    }))
}

/// Builds the `request` entry of one device.
pub(super) fn request_line(
    device: &AuditDevice,
    now: Timestamp,
    request: &Request,
    auth: Option<&AuditAuth>,
) -> AuditLine {
    let entry = json!({
        "type": "request",
        "time": now.to_rfc3339(),
        "auth": auth_json(device, auth),
        "request": request_json(device, request, auth),
        "error": "",
    });
    line(device, &entry)
}

/// Builds the `response` entry of one device.
pub(super) fn response_line(
    device: &AuditDevice,
    now: Timestamp,
    request: &Request,
    auth: Option<&AuditAuth>,
    result: &Result<Response, Error>,
) -> AuditLine {
    let (response, error) = match result {
        Ok(response) => (response_json(device, response), String::new()),
        Err(error) => (json!({}), error_text(error)),
    };
    let entry = json!({
        "type": "response",
        "time": now.to_rfc3339(),
        "auth": auth_json(device, auth),
        "request": request_json(device, request, auth),
        "response": response,
        "error": error,
    });
    line(device, &entry)
}

fn line(device: &AuditDevice, entry: &Value) -> AuditLine {
    AuditLine {
        device: device.path.clone(),
        local: device.local,
        file_path: device.file_path().to_owned(),
        file_mode: device.file_mode(),
        text: format!("{}{entry}", device.prefix()),
    }
}

fn error_text(error: &Error) -> String {
    match error {
        Error::Api { messages, .. } => messages.join("; "),
        Error::Storage(error) => error.to_string(),
    }
}

fn hash_accessor(device: &AuditDevice, accessor: &str) -> String {
    if accessor.is_empty() || !device.hmac_accessor() {
        return accessor.to_owned();
    }
    device.hmac_key.hash(accessor)
}

fn hash_secret(key: &HmacKey, secret: &Secret) -> String {
    if secret.expose().is_empty() {
        return String::new();
    }
    key.hash(secret.expose())
}

fn auth_json(device: &AuditDevice, auth: Option<&AuditAuth>) -> Value {
    let Some(auth) = auth else {
        return json!({});
    };
    json!({
        "client_token": hash_secret(&device.hmac_key, &auth.client_token),
        "accessor": hash_accessor(device, &auth.accessor),
        "display_name": auth.display_name,
        "policies": auth.policies,
        "token_policies": auth.policies,
        "metadata": auth.metadata,
        "entity_id": "",
        "token_type": auth.token_type,
        "token_ttl": auth.token_ttl,
        "token_issue_time": auth.token_issue_time.to_rfc3339_seconds(),
    })
}

fn request_json(device: &AuditDevice, request: &Request, auth: Option<&AuditAuth>) -> Value {
    let client_token = request
        .token
        .as_ref()
        .map(|token| hash_secret(&device.hmac_key, token))
        .unwrap_or_default();
    let accessor = auth.map_or(String::new(), |auth| hash_accessor(device, &auth.accessor));
    let data = if request.data.is_empty() {
        Value::Null
    } else {
        hash_values(&device.hmac_key, &Value::Object(request.data.clone()))
    };
    let mut object = json!({
        "id": request.id,
        "operation": request.operation,
        "client_token": client_token,
        "client_token_accessor": accessor,
        "namespace": {"id": "root"},
        "path": crate::token::redact_path(&request.path),
        "data": data,
        "remote_address": request.remote_addr.map(|addr| addr.to_string()).unwrap_or_default(),
    });
    if let Some(ttl) = request.wrap_ttl {
        object["wrap_ttl"] = json!(ttl.as_secs());
    }
    object
}

fn response_json(device: &AuditDevice, response: &Response) -> Value {
    match response {
        Response::Logical(logical) => logical_json(device, logical),
        Response::Raw { body, .. } => json!({ "data": hash_values(&device.hmac_key, body) }),
        Response::NoContent => json!({}),
    }
}

fn logical_json(device: &AuditDevice, logical: &Logical) -> Value {
    let key = &device.hmac_key;
    let mut object = Map::new();
    if !logical.mount_type.is_empty() {
        object.insert("mount_type".into(), json!(logical.mount_type));
    }
    if let Some(auth) = &logical.auth {
        object.insert("auth".into(), response_auth_json(device, auth));
    }
    if !logical.lease_id.is_empty() {
        object.insert(
            "secret".into(),
            json!({"lease_id": logical.lease_id, "renewable": logical.renewable}),
        );
    }
    if let Some(data) = &logical.data {
        object.insert(
            "data".into(),
            hash_values(key, &Value::Object(data.clone())),
        );
    }
    if let Some(wrap_info) = &logical.wrap_info {
        object.insert("wrap_info".into(), wrap_info_json(device, wrap_info));
    }
    if !logical.warnings.is_empty() {
        object.insert("warnings".into(), json!(logical.warnings));
    }
    Value::Object(object)
}

fn response_auth_json(device: &AuditDevice, auth: &Auth) -> Value {
    json!({
        "client_token": hash_secret(&device.hmac_key, &auth.client_token),
        "accessor": hash_accessor(device, &auth.accessor),
        "policies": auth.policies,
        "token_policies": auth.token_policies,
        "metadata": auth.metadata,
        "entity_id": auth.entity_id,
        "token_type": auth.token_type,
        "token_ttl": auth.lease_duration,
        "renewable": auth.renewable,
        "num_uses": auth.num_uses,
        "orphan": auth.orphan,
    })
}

fn wrap_info_json(device: &AuditDevice, wrap_info: &WrapInfo) -> Value {
    json!({
        "token": hash_secret(&device.hmac_key, &wrap_info.token),
        "accessor": hash_accessor(device, &wrap_info.accessor),
        "ttl": wrap_info.ttl,
        "creation_time": wrap_info.creation_time,
        "creation_path": wrap_info.creation_path,
        "wrapped_accessor": hash_accessor(device, &wrap_info.wrapped_accessor),
    })
}

/// Replaces every string in `value`, at any depth, with its hash. Object keys, numbers,
/// booleans and nulls stay as they are, as in Vault's audit entries.
pub(super) fn hash_values(key: &HmacKey, value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(key.hash(text)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| hash_values(key, item)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, item)| (name.clone(), hash_values(key, item)))
                .collect(),
        ),
        other => other.clone(),
    }
}
