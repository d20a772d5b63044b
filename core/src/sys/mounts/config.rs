//! Decoding the `config` and `options` fields of mount and tune requests.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::engines::params;
use crate::error::Error;
use crate::mounts::{MountConfig, TableKind};

/// Config keys stored and listed as given, beside the TTLs and `force_no_cache`.
const PASSTHROUGH_KEYS: &[&str] = &[
    "allowed_response_headers",
    "audit_non_hmac_request_keys",
    "audit_non_hmac_response_keys",
    "listing_visibility",
    "passthrough_request_headers",
    "plugin_version",
    "token_type",
];

/// The token types an auth method may issue.
const TOKEN_TYPES: &[&str] = &["default-service", "default-batch", "service", "batch"];

/// Normalises a mount path to exactly one trailing slash, such as `secret/` from `/secret`.
pub(super) fn mount_path(raw: &str) -> Result<String, Error> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::bad_request(
            "missing mount path: name the path to mount at",
        ));
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::bad_request(format!(
            "invalid mount path {raw:?}: segments may not be empty, \".\" or \"..\""
        )));
    }
    Ok(format!("{trimmed}/"))
}

/// Decodes the `config` object of an enable request.
pub(super) fn parse_config(
    data: &Map<String, Value>,
    kind: TableKind,
) -> Result<MountConfig, Error> {
    let mut config = MountConfig::default();
    if kind == TableKind::Auth {
        config
            .passthrough
            .insert("token_type".into(), "default-service".into());
    }
    match data.get("config") {
        None | Some(Value::Null) => Ok(config),
        Some(Value::Object(fields)) => {
            apply(&mut config, fields)?;
            Ok(config)
        }
        Some(_) => Err(Error::bad_request("invalid config: expected a JSON object")),
    }
}

/// Applies the TTLs, `force_no_cache` and passthrough settings present in `fields`.
pub(super) fn apply(config: &mut MountConfig, fields: &Map<String, Value>) -> Result<(), Error> {
    if let Some(ttl) = params::duration(fields, "default_lease_ttl")? {
        config.default_lease_ttl = ttl.as_secs();
    }
    if let Some(ttl) = params::duration(fields, "max_lease_ttl")? {
        config.max_lease_ttl = ttl.as_secs();
    }
    if let Some(flag) = params::boolean(fields, "force_no_cache")? {
        config.force_no_cache = flag;
    }
    for key in PASSTHROUGH_KEYS {
        if let Some(value) = fields.get(*key) {
            config.passthrough.insert((*key).to_owned(), value.clone());
        }
    }
    check_token_type(config)?;
    check_ttls(config)
}

/// Decodes the `options` map, turning numbers into strings.
pub(super) fn parse_options(data: &Map<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    let options = params::string_map(data, "options")?.unwrap_or_default();
    Ok(options
        .into_iter()
        .filter_map(|(key, value)| value.as_str().map(|text| (key, text.to_owned())))
        .collect())
}

fn check_token_type(config: &MountConfig) -> Result<(), Error> {
    match config.passthrough.get("token_type") {
        None => Ok(()),
        Some(Value::String(kind)) if TOKEN_TYPES.contains(&kind.as_str()) => Ok(()),
        Some(other) => Err(Error::bad_request(format!(
            "invalid token_type {other}: use one of {}",
            TOKEN_TYPES.join(", ")
        ))),
    }
}

fn check_ttls(config: &MountConfig) -> Result<(), Error> {
    let (default, max) = (config.default_lease_ttl, config.max_lease_ttl);
    if max != 0 && default > max {
        return Err(Error::bad_request(format!(
            "default_lease_ttl ({default}s) may not exceed max_lease_ttl ({max}s)"
        )));
    }
    Ok(())
}
