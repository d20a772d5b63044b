//! ACL policies: parsing (HCL and JSON) and evaluation.
//!
//! A request is allowed when the single most specific rule of the caller's policies grants the
//! operation's capability, plus `sudo` on root-protected paths. The `root` policy allows
//! everything; `default` is an ordinary stored policy that every token gets unless it opts out.

mod matcher;
mod parameters;
mod policy;
mod store;

pub use parameters::{ParameterRules, ParameterValues};
pub use policy::{Capabilities, Policy, PolicyError, parse_policy};
pub use store::PolicyStore;
pub(crate) use store::normalize_policy_name;

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Caller, Operation, Request};
use crate::storage::Transaction;

/// The built-in policy that grants everything. It is never stored.
pub const ROOT_POLICY: &str = "root";

/// The policy attached to every token unless it is created with `no_default_policy`.
pub const DEFAULT_POLICY: &str = "default";

/// The built-in policy of response-wrapping tokens: create and read `cubbyhole/response`, and
/// update `sys/wrapping/unwrap`. It is never stored or listed.
pub const RESPONSE_WRAPPING_POLICY: &str = store::RESPONSE_WRAPPING_POLICY;

/// Paths that need `sudo` besides the operation's capability, as ACL patterns. `sys/seal` and
/// `sys/step-down` are root-protected too, but their handlers check that themselves.
const ROOT_PROTECTED: &[&str] = &[
    "sys/auth/*",
    "sys/remount",
    "sys/audit",
    "sys/audit/*",
    "sys/raw",
    "sys/raw/*",
    "sys/rotate",
    "sys/rotate/keyring",
    "sys/config/cors",
    "sys/config/auditing/*",
    "sys/plugins/catalog/*",
    "sys/revoke-prefix/*",
    "sys/revoke-force/*",
    "sys/leases/revoke-prefix/*",
    "sys/leases/revoke-force/*",
    "sys/leases/lookup/*",
    "sys/internal/inspect/*",
    "sys/replication/primary/*",
    "sys/replication/secondary/*",
    "sys/replication/performance/primary/*",
    "sys/replication/performance/secondary/*",
    "sys/replication/dr/primary/*",
    "sys/replication/dr/secondary/*",
    "sys/replication/reindex",
    "sys/replication/merkle-check",
    "sys/replication/recover",
    "sys/replication/quarantine",
    "sys/replication/quarantine/*",
    "auth/token/accessors",
    "auth/token/accessors/",
    "auth/token/revoke-orphan",
    "auth/token/revoke-orphan/*",
];

/// Checks that `caller`'s policies allow `request`, including `sudo` on root-protected paths.
pub fn authorize(
    core: &Core,
    caller: &Caller,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<(), Error> {
    if caller.is_root() || crate::sys::checks_own_access(request) {
        return Ok(());
    }
    // The older token forms such as `auth/token/revoke/<token>` are checked as their base
    // path, so a rule on `auth/token/revoke` cannot be bypassed through them.
    let path = crate::token::acl_path(&request.path);
    let granted = capabilities(core, &caller.policies, path, txn)?;
    let required = required_capability(core, request, txn)?;
    if !granted.contains(required) {
        return Err(Error::permission_denied());
    }
    if is_root_protected(path) && !granted.contains(Capabilities::SUDO) {
        return Err(Error::permission_denied());
    }
    // A caller with the `root` policy gets `Capabilities::ROOT` above and no parameter rules.
    if granted.contains(Capabilities::ROOT) {
        return Ok(());
    }
    let loaded = load_policies(core, &caller.policies, txn)?;
    let policies = loaded.iter().map(|policy| policy.as_ref());
    if let Some(pattern) = matcher::winning_pattern(policies.clone(), path) {
        matcher::parameter_rules(policies, pattern).check(pattern, request)?;
    }
    Ok(())
}

fn load_policies(
    core: &Core,
    names: &[String],
    txn: &dyn Transaction,
) -> Result<Vec<std::sync::Arc<Policy>>, Error> {
    let mut loaded = Vec::with_capacity(names.len());
    for name in names {
        if let Some(policy) = core.policies.get(core, txn, name)? {
            loaded.push(policy);
        }
    }
    Ok(loaded)
}

/// Computes the capabilities `policies` grant on `path`, with `deny` applied. A policy list with
/// `root` gets [`Capabilities::ROOT`]; policies that do not exist grant nothing.
pub fn capabilities(
    core: &Core,
    policies: &[String],
    path: &str,
    txn: &dyn Transaction,
) -> Result<Capabilities, Error> {
    if policies.iter().any(|name| name == ROOT_POLICY) {
        return Ok(Capabilities::ROOT);
    }
    let loaded = load_policies(core, policies, txn)?;
    Ok(matcher::evaluate(
        loaded.iter().map(|policy| policy.as_ref()),
        path,
    ))
}

/// Reports whether `caller` has some capability on the mount at `mount_path` (such as
/// `secret/` or `auth/userpass/`) or on a path under it.
pub fn has_mount_access(
    core: &Core,
    caller: &Caller,
    mount_path: &str,
    txn: &dyn Transaction,
) -> Result<bool, Error> {
    if caller.is_root() {
        return Ok(true);
    }
    let loaded = load_policies(core, &caller.policies, txn)?;
    Ok(matcher::grants_under(
        loaded.iter().map(|policy| policy.as_ref()),
        mount_path,
    ))
}

/// Returns whether `caller` is root or has `sudo` on `path`, for handlers that decide it themselves
/// (`sys/seal`, token creation with `no_parent` or `period`).
pub fn has_sudo(
    core: &Core,
    caller: &Caller,
    path: &str,
    txn: &dyn Transaction,
) -> Result<bool, Error> {
    if caller.is_root() {
        return Ok(true);
    }
    let granted = capabilities(core, &caller.policies, path, txn)?;
    Ok(granted.contains(Capabilities::SUDO))
}

/// Writes the built-in `default` policy on a newly initialised barrier.
pub fn initialize(core: &Core, view: &mut SecureView<'_>) -> Result<(), Error> {
    let policy = parse_policy(DEFAULT_POLICY, store::DEFAULT_POLICY_TEXT)?;
    core.policies.put(view, &policy)
}

/// Returns the capability an operation needs. A write needs `create` when the engine reports
/// that the target does not exist, and `update` otherwise, as Vault's existence check decides.
fn required_capability(
    core: &Core,
    request: &Request,
    txn: &dyn Transaction,
) -> Result<Capabilities, Error> {
    Ok(match request.operation {
        Operation::Read => Capabilities::READ,
        Operation::List => Capabilities::LIST,
        Operation::Delete => Capabilities::DELETE,
        Operation::Patch => Capabilities::PATCH,
        Operation::Update => match crate::engines::exists(core, request, txn)? {
            Some(false) => Capabilities::CREATE,
            Some(true) | None => Capabilities::UPDATE,
        },
    })
}

fn is_root_protected(path: &str) -> bool {
    ROOT_PROTECTED
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == *pattern,
        })
}

#[cfg(test)]
mod tests;
