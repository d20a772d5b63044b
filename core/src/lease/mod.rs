//! The expiration manager: one lease per token with a TTL, kept in the local partition.
//!
//! Layout, every value encrypted by the barrier:
//! - `lease/id/<lease id>`: the [`LeaseEntry`];
//! - `lease/expiry/<nanoseconds, 20 digits>/<lease id>`: the expiry index, sorted by time, which
//!   [`next_expiry`] and [`expire_due`] read from the front.
//!
//! A token lease id is the token's creation path and `h` with its salted hash, as Vault names
//! them (`auth/userpass/login/alice/h<hash>`). The token store keeps the lease in step with the
//! token: saving a token with an expiry writes its lease, and removing a token removes it.
//! Nothing in this module reads a clock: the io layer calls [`expire_due`] with `now` when the
//! instant [`next_expiry`] returns has passed.
//!
//! NOTE: no secrets engine here issues leased secrets (Vault's PKI or database engines would),
//! so every lease is a token lease.

mod routes;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub(crate) use routes::route;

use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;

const ID_PREFIX: &str = "lease/id/";
const EXPIRY_PREFIX: &str = "lease/expiry/";

/// The maximum number of leases one call of [`expire_due`] revokes. The io layer calls it again
/// at once while [`next_expiry`] is still in the past, so a burst of expiries is spread over
/// several commits instead of one unbounded transaction.
pub const MAX_EXPIRED_PER_CALL: usize = 256;

/// One lease as stored. The token's own entry keeps its times, so the lease keeps only the link
/// and the expiry that names its index key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseEntry {
    /// The salted hash of the token the lease belongs to.
    pub(crate) token_hash: String,
    /// When the lease ends.
    pub(crate) expire_time: Timestamp,
}

/// Returns the lease id of the token with `token_hash` created on `path`.
pub(crate) fn token_lease_id(path: &str, token_hash: &str) -> String {
    let path = path.trim_matches('/');
    let path = if path.is_empty() { "auth/token" } else { path };
    format!("{path}/h{token_hash}")
}

/// Reads the lease with `lease_id`.
pub(crate) fn get(view: &SecureView<'_>, lease_id: &str) -> Result<Option<LeaseEntry>, Error> {
    if lease_id.is_empty() {
        return Ok(None);
    }
    view.get_json(Partition::Local, &format!("{ID_PREFIX}{lease_id}"))
}

/// Writes the lease of a token that expires at `expire_time`, or removes it when the token no
/// longer expires. The token store calls it whenever it saves a token.
pub(crate) fn save_token_lease(
    view: &mut SecureView<'_>,
    lease_id: &str,
    token_hash: &str,
    expire_time: Option<Timestamp>,
) -> Result<(), Error> {
    let old = get(view, lease_id)?;
    if let Some(old) = &old {
        if Some(old.expire_time) == expire_time {
            return Ok(());
        }
        view.delete(Partition::Local, &expiry_key(old.expire_time, lease_id))?;
    }
    let Some(expire_time) = expire_time else {
        if old.is_some() {
            view.delete(Partition::Local, &format!("{ID_PREFIX}{lease_id}"))?;
        }
        return Ok(());
    };
    let entry = LeaseEntry {
        token_hash: token_hash.to_owned(),
        expire_time,
    };
    view.put_json(Partition::Local, &format!("{ID_PREFIX}{lease_id}"), &entry)?;
    view.put(Partition::Local, &expiry_key(expire_time, lease_id), b"")
}

/// Removes a lease and its index key. Removing a missing lease does nothing.
pub(crate) fn remove(view: &mut SecureView<'_>, lease_id: &str) -> Result<(), Error> {
    let Some(entry) = get(view, lease_id)? else {
        return Ok(());
    };
    view.delete(Partition::Local, &expiry_key(entry.expire_time, lease_id))?;
    view.delete(Partition::Local, &format!("{ID_PREFIX}{lease_id}"))
}

/// Returns when the earliest lease ends, or `None` when there is no lease. Reads one index key.
pub fn next_expiry(txn: &dyn Transaction) -> Result<Option<Timestamp>, Error> {
    let first = txn.scan(Partition::Local, EXPIRY_PREFIX, None, Some(1))?;
    Ok(first
        .first()
        .and_then(|key| parse_expiry_key(key))
        .map(|(time, _)| time))
}

/// Revokes every lease that ended at or before `now`, at most [`MAX_EXPIRED_PER_CALL`] of them,
/// with the token each belongs to and that token's children. Returns how many leases it
/// revoked.
pub fn expire_due(view: &mut SecureView<'_>, now: Timestamp) -> Result<usize, Error> {
    let keys = view.raw().scan(
        Partition::Local,
        EXPIRY_PREFIX,
        None,
        Some(MAX_EXPIRED_PER_CALL),
    )?;
    let mut revoked = 0;
    for key in keys {
        let Some((expire_time, lease_id)) = parse_expiry_key(&key) else {
            // An index key this module did not write: drop it so it cannot stall expiry.
            view.delete(Partition::Local, &key)?;
            continue;
        };
        if expire_time > now {
            break;
        }
        revoke(view, lease_id)?;
        revoked += 1;
    }
    Ok(revoked)
}

/// Revokes one lease: its token (with the token's children) and the lease itself.
pub(crate) fn revoke(view: &mut SecureView<'_>, lease_id: &str) -> Result<(), Error> {
    if let Some(entry) = get(view, lease_id)? {
        crate::token::revoke_tree_by_hash(view, &entry.token_hash)?;
    }
    remove(view, lease_id)
}

/// Lists every lease id that starts with `prefix`, sorted.
pub(crate) fn ids_with_prefix(view: &SecureView<'_>, prefix: &str) -> Result<Vec<String>, Error> {
    let keys = view.scan(Partition::Local, &format!("{ID_PREFIX}{prefix}"))?;
    Ok(keys
        .iter()
        .filter_map(|key| key.strip_prefix(ID_PREFIX))
        .map(str::to_owned)
        .collect())
}

fn expiry_key(expire_time: Timestamp, lease_id: &str) -> String {
    format!("{EXPIRY_PREFIX}{:020}/{lease_id}", expire_time.as_nanos())
}

fn parse_expiry_key(key: &str) -> Option<(Timestamp, &str)> {
    let rest = key.strip_prefix(EXPIRY_PREFIX)?;
    let (nanos, lease_id) = rest.split_once('/')?;
    let nanos = nanos.parse::<u64>().ok()?;
    Some((Timestamp::from_nanos(nanos), lease_id))
}
