//! `login`: a role-id and, when the role binds one, a secret-id in exchange for a token.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::role::{self, RoleEntry};
use super::{Salt, secret_id};
use crate::Core;
use crate::auth::{Mount, cidr};
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::request::{Logical, Response, Secret};
use crate::time::Timestamp;

/// The one message for a wrong role-id and a wrong secret-id, so that a client cannot
/// distinguish them.
const INVALID_CREDENTIALS: &str = "invalid role or secret ID";

/// Logs in with `role_id` and `secret_id` from `data`, from `remote_addr`.
///
/// A secret-id with limited uses loses one in this request's transaction, and the login that
/// spends its last use deletes it. Its use is spent before the token is issued, so a replica
/// that must forward the shared write does so before it writes anything local.
pub(super) fn login(
    core: &Core,
    mount: &Mount,
    view: &mut SecureView<'_>,
    now: Timestamp,
    remote_addr: Option<IpAddr>,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let role_id = credential(data, "role_id")?.ok_or_else(|| bad("missing role_id"))?;
    let secret = credential(data, "secret_id")?;
    let (name, role) = find_role(mount, view, &role_id)?.ok_or_else(invalid)?;
    if !cidr::allows(&role.secret_id_bound_cidrs, remote_addr) {
        return Err(bad(&format!(
            "source address {} unauthorized by CIDR restrictions on the role",
            address_text(remote_addr)
        )));
    }
    if role.bind_secret_id {
        let secret = secret.ok_or_else(|| bad("missing secret_id"))?;
        spend_secret_id(mount, view, now, remote_addr, &role, &secret)?;
    }

    let meta = BTreeMap::from([(String::from("role_name"), name)]);
    let display_name = mount.display_prefix().trim_end_matches('-').to_owned();
    let path = format!("{}login", mount.request_prefix());
    let params = role.token.token_params(mount, display_name, path, meta)?;
    let auth = crate::token::issue_token(core, view, now, &params)?;
    Ok(Response::logical(Logical {
        status: 200,
        auth: Some(auth),
        ..Logical::default()
    }))
}

/// Finds the role with `role_id` and its name, comparing the stored role-id in constant time.
fn find_role(
    mount: &Mount,
    view: &SecureView<'_>,
    role_id: &Secret,
) -> Result<Option<(String, RoleEntry)>, Error> {
    let Some(salt) = Salt::load(mount, view)? else {
        return Ok(None);
    };
    let Some(name) = role::name_for_role_id(mount, view, &salt.hmac(role_id.expose()))? else {
        return Ok(None);
    };
    let Some(role) = role::load(mount, view, &name)? else {
        return Ok(None);
    };
    let same = role.role_id.as_bytes().ct_eq(role_id.expose().as_bytes());
    Ok(bool::from(same).then_some((name, role)))
}

/// Checks the secret-id and spends one of its uses.
fn spend_secret_id(
    mount: &Mount,
    view: &mut SecureView<'_>,
    now: Timestamp,
    remote_addr: Option<IpAddr>,
    role: &RoleEntry,
    secret: &Secret,
) -> Result<(), Error> {
    let salt = Salt::load(mount, view)?.ok_or_else(invalid)?;
    let secret_hmac = salt.hmac(secret.expose());
    let entry = secret_id::load(mount, view, role, &secret_hmac)?;
    let Some(mut entry) = entry.filter(|entry| !entry.is_expired(now)) else {
        return Err(invalid());
    };
    if !cidr::allows(&entry.cidr_list, remote_addr) {
        return Err(bad(&format!(
            "source address {} unauthorized through CIDR restrictions on the secret ID",
            address_text(remote_addr)
        )));
    }
    match entry.num_uses {
        0 => Ok(()),
        1 => secret_id::remove(mount, view, role, &secret_hmac, &entry.accessor),
        left => {
            entry.num_uses = left - 1;
            entry.last_updated_time = now;
            secret_id::save(mount, view, role, &secret_hmac, &entry)
        }
    }
}

/// A credential field as a secret; `None` when absent or empty.
fn credential(data: &Map<String, Value>, field: &str) -> Result<Option<Secret>, Error> {
    Ok(params::string(data, field)?
        .map(|text| Secret::new(text.trim()))
        .filter(|secret| !secret.expose().is_empty()))
}

fn address_text(address: Option<IpAddr>) -> String {
    address.map_or_else(
        || String::from("(unknown)"),
        |address| format!("{:?}", address.to_string()),
    )
}

fn invalid() -> Error {
    Error::bad_request(INVALID_CREDENTIALS)
}

fn bad(message: &str) -> Error {
    Error::bad_request(message)
}
