//! The AppRole auth method: roles whose role-id and secret-ids log a machine in.
//!
//! Layout below the mount's prefix, every value behind the barrier:
//! - `salt`: the mount's 32-byte HMAC key, in the mount's data partition;
//! - `role/<name>`: a [`role::RoleEntry`] (role names are lowercased);
//! - `role_id/<hmac>`: the name of the role whose role-id has that HMAC;
//! - `secret_id/<role uuid>/<hmac>`: a [`secret_id::SecretIdEntry`], found by the secret-id's
//!   HMAC;
//! - `accessor/<role uuid>/<accessor>`: the HMAC of the secret-id with that accessor.
//!
//! Storage keys are not encrypted, so they hold HMACs of role-ids and secret-ids, never the
//! values. Secret-ids live in the mount's data partition, or in the local partition when the
//! role has `local_secret_ids`, so that such secret-ids never replicate. They are keyed by a
//! random uuid of the role, so a deleted role's secret-ids stay dead when a role of the same
//! name is created again.

mod login;
mod role;
mod secret_id;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Mount;
use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Operation, Request, Response};
use crate::storage::Transaction;

/// Serves `auth/<mount>/<rest>` of an approle mount.
pub(crate) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    rest: &str,
    mount: &Mount,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    use Operation::{Delete, List, Read, Update};
    let now = ctx.now;
    let remote_addr = request.remote_addr;
    let mut view = core.barrier.view(txn, ctx.rng)?;
    let data = &request.data;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (request.operation, segments.as_slice()) {
        (Update, ["login"]) => login::login(core, mount, &mut view, now, remote_addr, data),
        (List, ["role"]) => role::list(mount, &view),
        (Read, ["role", name]) => role::read(mount, &view, name),
        (Update, ["role", name]) => role::write(mount, &mut view, name, data),
        (Delete, ["role", name]) => role::delete(mount, &mut view, name),
        (Read, ["role", name, "role-id"]) => role::read_role_id(mount, &view, name),
        (Update, ["role", name, "role-id"]) => role::write_role_id(mount, &mut view, name, data),
        (Update, ["role", name, "secret-id"]) => {
            secret_id::generate(mount, &mut view, now, name, data, None)
        }
        (Update, ["role", name, "custom-secret-id"]) => {
            let custom = secret_id::custom_value(data)?;
            secret_id::generate(mount, &mut view, now, name, data, Some(custom))
        }
        (List, ["role", name, "secret-id"]) => secret_id::list(mount, &view, name),
        (Update, ["role", name, "secret-id", "lookup"]) => {
            secret_id::lookup(mount, &view, now, name, data)
        }
        (Update | Delete, ["role", name, "secret-id", "destroy"]) => {
            secret_id::destroy(mount, &mut view, name, data)
        }
        (Update, ["role", name, "secret-id-accessor", "lookup"]) => {
            secret_id::lookup_accessor(mount, &view, now, name, data)
        }
        (Update | Delete, ["role", name, "secret-id-accessor", "destroy"]) => {
            secret_id::destroy_accessor(mount, &mut view, name, data)
        }
        (Read | Update | Delete, ["role", name, field]) if role::is_field_path(field) => {
            role::field(mount, &mut view, request.operation, name, field, data)
        }
        (_, ["login"] | ["role"] | ["role", _] | ["role", _, _] | ["role", _, _, _]) => {
            Err(Error::unsupported_operation())
        }
        _ => Err(Error::no_handler(&request.path)),
    }
}

/// Returns the key whose presence decides whether a write to `rest` creates or updates a role.
pub(crate) fn existence_key(mount: &Mount, rest: &str) -> Option<String> {
    match rest
        .trim_end_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["role", name] => Some(role::role_key(mount, &name.to_lowercase())),
        _ => None,
    }
}

/// The mount's HMAC key for role-ids and secret-ids.
struct Salt(Zeroizing<Vec<u8>>);

impl Salt {
    fn key(mount: &Mount) -> String {
        mount.location.key("salt")
    }

    /// Reads the mount's salt; `None` before the first role is written.
    fn load(mount: &Mount, view: &SecureView<'_>) -> Result<Option<Salt>, Error> {
        Ok(view
            .get(mount.location.partition, &Salt::key(mount))?
            .map(Salt))
    }

    /// Reads the mount's salt, creating it on first use.
    fn load_or_create(mount: &Mount, view: &mut SecureView<'_>) -> Result<Salt, Error> {
        if let Some(salt) = Salt::load(mount, view)? {
            return Ok(salt);
        }
        let bytes = Zeroizing::new(crate::ids::bytes::<32>(view.rng()).to_vec());
        view.put(mount.location.partition, &Salt::key(mount), &bytes)?;
        Ok(Salt(bytes))
    }

    /// hex(HMAC-SHA256(salt, value)), the form role-ids and secret-ids take in storage keys.
    fn hmac(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .expect("HMAC-SHA256 accepts a key of any length");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests;
