//! `backup/:name` and `restore[/:name]`: a key with all of its versions as one base64 string,
//! for keys created with `exportable` and `allow_plaintext_backup`.
//!
//! The backup is base64 of the key's stored JSON, so it is Coffer's own format: a backup from
//! Vault does not restore here, nor the reverse.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::engines::Location;
use crate::engines::params;
use crate::error::Error;
use crate::request::Response;

use super::key::{self, Policy};

/// Serves `backup/:name`. Vault returns a 500 for a refused backup, and clients such as hvac
/// expect that status.
pub(super) fn backup(
    name: &str,
    location: &Location,
    view: &SecureView<'_>,
) -> Result<Response, Error> {
    let policy = key::load_existing(location, view, name)?;
    if !policy.exportable {
        return Err(Error::internal(format!(
            "exporting is disallowed on the policy: key {name:?} was not created with \
             exportable=true"
        )));
    }
    if !policy.allow_plaintext_backup {
        return Err(Error::internal(format!(
            "plaintext backup is disallowed on the policy: key {name:?} was not created with \
             allow_plaintext_backup=true"
        )));
    }
    let encoded = Zeroizing::new(serde_json::to_vec(&policy)?);
    let text = Zeroizing::new(STANDARD.encode(&*encoded));
    Ok(Response::data_value(json!({ "backup": *text })))
}

/// Serves `restore[/:name]`: stores the key from `backup`, under `name` when given. An existing
/// key is replaced only with `force`.
pub(super) fn restore(
    name: Option<&str>,
    data: &Map<String, Value>,
    location: &Location,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let Some(backup) = params::string(data, "backup")?.map(Zeroizing::new) else {
        return Err(Error::bad_request("missing backup"));
    };
    let force = params::boolean(data, "force")?.unwrap_or(false);
    let decoded = STANDARD
        .decode(backup.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| Error::bad_request("invalid backup: failed to base64-decode backup"))?;
    let mut policy: Policy = serde_json::from_slice(&decoded).map_err(|_| {
        Error::bad_request("invalid backup: not a transit key backup made by this server")
    })?;
    if let Some(name) = name {
        policy.name = super::key_name(name)?.to_owned();
    }
    super::key_name(&policy.name)?;
    if !force && key::load(location, view, &policy.name)?.is_some() {
        return Err(Error::internal(format!(
            "key {:?} already exists: restore with force=true to replace it",
            policy.name
        )));
    }
    key::save(location, view, &policy)?;
    Ok(Response::NoContent)
}
