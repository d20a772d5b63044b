//! Token entries in the local partition, kept by the salted hash of the token.
//!
//! Layout, every value encrypted by the barrier:
//! - `token/salt`: this node's 32-byte HMAC key;
//! - `token/id/<hash>`: the [`TokenEntry`], where `hash` is hex(HMAC-SHA256(salt, token));
//! - `token/accessor/<accessor>`: the hash of the token with that accessor;
//! - `token/parent/<parent hash>/<child hash>`: the index that finds children to revoke.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::Caller;
use crate::storage::Partition;
use crate::time::Timestamp;

const SALT_KEY: &str = "token/salt";
const ID_PREFIX: &str = "token/id/";
pub(super) const ACCESSOR_PREFIX: &str = "token/accessor/";
const PARENT_PREFIX: &str = "token/parent/";

/// The maximum number of tokens one revocation removes. A larger tree fails instead of
/// running unbounded.
const MAX_REVOKED_TOKENS: usize = 100_000;

/// The maximum number of ancestors a valid token may have. Checking validity reads every
/// ancestor, so a token with a longer parent chain is treated as invalid, and creating a child
/// that would exceed the bound fails.
pub(crate) const MAX_PARENT_DEPTH: usize = 256;

/// A token as stored. The token itself is never stored, only its salted hash as the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub(crate) accessor: String,
    pub(crate) policies: Vec<String>,
    /// The parent's hash, or empty for an orphan.
    pub(crate) parent: String,
    pub(crate) display_name: String,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) creation_time: Timestamp,
    /// Seconds of TTL given at creation.
    pub(crate) creation_ttl: u64,
    /// Seconds; 0 for none.
    pub(crate) explicit_max_ttl: u64,
    /// Seconds; 0 for a token that is not periodic.
    pub(crate) period: u64,
    /// Seconds of the current lease; 0 for a token that never expires.
    pub(crate) ttl: u64,
    pub(crate) expire_time: Option<Timestamp>,
    pub(crate) last_renewal_time: Option<Timestamp>,
    /// Uses left; 0 for unlimited.
    pub(crate) num_uses: u64,
    pub(crate) renewable: bool,
    pub(crate) orphan: bool,
    pub(crate) path: String,
    pub(crate) token_type: String,
    /// The role the token was created with, or empty.
    #[serde(default)]
    pub(crate) role: String,
    /// Set when the token spent its last use. The request that spent it still runs, and the
    /// next authentication (or `tidy`) revokes the token.
    #[serde(default)]
    pub(crate) revoke_pending: bool,
}

impl TokenEntry {
    /// Returns whether the token's lease ended at or before `now`.
    pub(crate) fn is_expired(&self, now: Timestamp) -> bool {
        self.expire_time.is_some_and(|expire| now >= expire)
    }

    /// Returns whether the token still authenticates: not expired and uses left.
    pub(crate) fn is_live(&self, now: Timestamp) -> bool {
        !self.revoke_pending && !self.is_expired(now)
    }

    /// Seconds left until expiry; 0 for a token that never expires.
    pub(crate) fn remaining_ttl(&self, now: Timestamp) -> u64 {
        self.expire_time
            .map_or(0, |expire| expire.saturating_since(now).as_secs())
    }

    /// Builds the caller this token authenticates.
    pub(crate) fn caller(&self, token_hash: &str) -> Caller {
        Caller {
            accessor: self.accessor.clone(),
            token_hash: token_hash.to_owned(),
            policies: self.policies.clone(),
            display_name: self.display_name.clone(),
            token_path: self.path.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AccessorEntry {
    token_hash: String,
}

/// Computes the salted hash of `token`, or `None` when this node has no salt yet (and so no
/// tokens).
pub(crate) fn existing_hash(view: &SecureView<'_>, token: &str) -> Result<Option<String>, Error> {
    Ok(view
        .get(Partition::Local, SALT_KEY)?
        .map(|salt| hash_token(&salt, token)))
}

/// Computes the salted hash of `token`, creating this node's salt on first use.
pub(crate) fn new_hash(view: &mut SecureView<'_>, token: &str) -> Result<String, Error> {
    if let Some(hash) = existing_hash(view, token)? {
        return Ok(hash);
    }
    let salt = Zeroizing::new(crate::ids::bytes::<32>(view.rng()));
    view.put(Partition::Local, SALT_KEY, salt.as_ref())?;
    Ok(hash_token(salt.as_ref(), token))
}

fn hash_token(salt: &[u8], token: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(salt).expect("HMAC-SHA256 accepts a key of any length");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Finds the entry and hash of `token`, if it exists.
pub(crate) fn find(
    view: &SecureView<'_>,
    token: &str,
) -> Result<Option<(String, TokenEntry)>, Error> {
    let Some(hash) = existing_hash(view, token)? else {
        return Ok(None);
    };
    Ok(get(view, &hash)?.map(|entry| (hash, entry)))
}

/// Reads the entry stored under `token_hash`.
pub(crate) fn get(view: &SecureView<'_>, token_hash: &str) -> Result<Option<TokenEntry>, Error> {
    view.get_json(Partition::Local, &format!("{ID_PREFIX}{token_hash}"))
}

/// Counts the ancestors of `entry`, or returns `None` when one of them is missing or no longer
/// live, or the chain is longer than [`MAX_PARENT_DEPTH`]. Vault revokes a token's children
/// when it expires, so a token is valid only while its whole parent chain is. Reads one entry
/// per ancestor and writes nothing.
pub(crate) fn live_ancestors(
    view: &SecureView<'_>,
    entry: &TokenEntry,
    now: Timestamp,
) -> Result<Option<usize>, Error> {
    let mut parent = entry.parent.clone();
    let mut depth = 0;
    while !parent.is_empty() {
        depth += 1;
        if depth > MAX_PARENT_DEPTH {
            return Ok(None);
        }
        match get(view, &parent)? {
            Some(ancestor) if ancestor.is_live(now) => parent = ancestor.parent,
            _ => return Ok(None),
        }
    }
    Ok(Some(depth))
}

/// Returns whether `entry` authenticates at `now`: live itself, with every ancestor live.
pub(crate) fn is_valid(
    view: &SecureView<'_>,
    entry: &TokenEntry,
    now: Timestamp,
) -> Result<bool, Error> {
    Ok(entry.is_live(now) && live_ancestors(view, entry, now)?.is_some())
}

/// Finds the hash of the token with `accessor`.
pub(crate) fn hash_for_accessor(
    view: &SecureView<'_>,
    accessor: &str,
) -> Result<Option<String>, Error> {
    if accessor.is_empty() || accessor.contains('/') {
        return Ok(None);
    }
    let entry: Option<AccessorEntry> =
        view.get_json(Partition::Local, &format!("{ACCESSOR_PREFIX}{accessor}"))?;
    Ok(entry.map(|entry| entry.token_hash))
}

/// Stores `entry` with its accessor, parent index and lease.
pub(crate) fn save(
    view: &mut SecureView<'_>,
    token_hash: &str,
    entry: &TokenEntry,
) -> Result<(), Error> {
    view.put_json(Partition::Local, &format!("{ID_PREFIX}{token_hash}"), entry)?;
    let accessor = AccessorEntry {
        token_hash: token_hash.to_owned(),
    };
    view.put_json(
        Partition::Local,
        &format!("{ACCESSOR_PREFIX}{}", entry.accessor),
        &accessor,
    )?;
    if !entry.parent.is_empty() {
        view.put(
            Partition::Local,
            &parent_key(&entry.parent, token_hash),
            b"",
        )?;
    }
    let lease_id = crate::lease::token_lease_id(&entry.path, token_hash);
    crate::lease::save_token_lease(view, &lease_id, token_hash, entry.expire_time)
}

/// Revokes the token and, recursively, every child it has.
pub(crate) fn revoke_tree(view: &mut SecureView<'_>, token_hash: &str) -> Result<(), Error> {
    let mut pending = vec![token_hash.to_owned()];
    let mut revoked = 0usize;
    while let Some(current) = pending.pop() {
        revoked += 1;
        if revoked > MAX_REVOKED_TOKENS {
            return Err(Error::internal(format!(
                "failed to revoke the token tree: it has more than {MAX_REVOKED_TOKENS} tokens"
            )));
        }
        pending.extend(children(view, &current)?);
        remove(view, &current)?;
    }
    Ok(())
}

/// Revokes only this token; its children become orphans.
pub(crate) fn revoke_orphan(view: &mut SecureView<'_>, token_hash: &str) -> Result<(), Error> {
    for child in children(view, token_hash)? {
        view.delete(Partition::Local, &parent_key(token_hash, &child))?;
        if let Some(mut entry) = get(view, &child)? {
            entry.parent.clear();
            entry.orphan = true;
            save(view, &child, &entry)?;
        }
    }
    remove(view, token_hash)
}

/// Revokes every token that expired or spent its last use, up to the revocation bound.
/// Returns how many tokens it revoked, children not counted.
pub(crate) fn tidy(view: &mut SecureView<'_>, now: Timestamp) -> Result<usize, Error> {
    let mut revoked = 0;
    for key in view.scan(Partition::Local, ID_PREFIX)? {
        let Some(token_hash) = key.strip_prefix(ID_PREFIX) else {
            continue;
        };
        let dead = get(view, token_hash)?.is_some_and(|entry| !entry.is_live(now));
        if dead && revoked < MAX_REVOKED_TOKENS {
            revoke_tree(view, token_hash)?;
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// Lists the accessor of every stored token, sorted.
pub(crate) fn accessors(view: &SecureView<'_>) -> Result<Vec<String>, Error> {
    Ok(view
        .scan(Partition::Local, ACCESSOR_PREFIX)?
        .iter()
        .filter_map(|key| key.strip_prefix(ACCESSOR_PREFIX))
        .map(str::to_owned)
        .collect())
}

fn children(view: &SecureView<'_>, token_hash: &str) -> Result<Vec<String>, Error> {
    let prefix = format!("{PARENT_PREFIX}{token_hash}/");
    Ok(view
        .scan(Partition::Local, &prefix)?
        .iter()
        .filter_map(|key| key.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
        .collect())
}

/// Deletes one token's entry, accessor, index keys, lease and cubbyhole.
fn remove(view: &mut SecureView<'_>, token_hash: &str) -> Result<(), Error> {
    for child in children(view, token_hash)? {
        view.delete(Partition::Local, &parent_key(token_hash, &child))?;
    }
    if let Some(entry) = get(view, token_hash)? {
        view.delete(
            Partition::Local,
            &format!("{ACCESSOR_PREFIX}{}", entry.accessor),
        )?;
        if !entry.parent.is_empty() {
            view.delete(Partition::Local, &parent_key(&entry.parent, token_hash))?;
        }
        crate::lease::remove(view, &crate::lease::token_lease_id(&entry.path, token_hash))?;
    }
    view.delete(Partition::Local, &format!("{ID_PREFIX}{token_hash}"))?;
    crate::engines::destroy_cubbyhole(view, token_hash)
}

fn parent_key(parent_hash: &str, child_hash: &str) -> String {
    format!("{PARENT_PREFIX}{parent_hash}/{child_hash}")
}
