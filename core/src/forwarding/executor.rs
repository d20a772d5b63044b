//! The primary's executor of forwarded requests.
//!
//! It runs each (secondary id, request id) at most once. The record of a successful response is
//! written in the shared partition in the same transaction as the request's own writes, so it
//! survives a restart and replicates to every secondary, which keeps it valid after a
//! failover. A retry within the retry window gets the recorded response back. A failed request
//! writes nothing, so a retry runs it again.
//!
//! A forwarded request runs with the primary's local partition read-only: it can change
//! replicated state and nothing else.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Core;
use crate::error::Error;
use crate::forwarding::message::{ForwardedRequest, ForwardedResult, MAX_REQUEST_ID_LEN};
use crate::handler::Ctx;
use crate::storage::{Guarded, Partition, Transaction};
use crate::time::Timestamp;

/// The default time the primary keeps the response of a forwarded request for retries.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(600);

/// Maximum number of expired records one execution deletes, so cleanup work per write is
/// bounded however many records expired at once.
pub const CLEANUP_BATCH: usize = 16;

/// Prefix of the records, by secondary id and request id.
const RECORD_PREFIX: &str = "core/forwarded/requests/";

/// Prefix of the expiry index: `<expiry in nanoseconds, 20 digits>/<secondary>/<request>`,
/// so a scan returns the oldest records first.
const EXPIRY_PREFIX: &str = "core/forwarded/expiry/";

/// Path prefixes that a forward never runs: replication control, the seal, the root key and
/// token issuance. Each comes with the reason the error message gives.
const UNFORWARDABLE_PREFIXES: &[(&str, &str)] = &[
    (
        "sys/replication",
        "replication is controlled on each cluster itself",
    ),
    ("sys/init", "initialisation is local to each cluster"),
    ("sys/seal", "the seal is controlled on each cluster itself"),
    (
        "sys/unseal",
        "the seal is controlled on each cluster itself",
    ),
    (
        "sys/step-down",
        "the seal is controlled on each cluster itself",
    ),
    ("sys/rekey", "rekeying is done on the primary directly"),
    (
        "sys/generate-root",
        "root generation is done on each cluster itself",
    ),
    (
        "auth/token",
        "tokens are issued by the cluster the client talks to",
    ),
    (
        "sys/audit",
        "an audit device writes files on each cluster; enable a shared device on the primary, \
         or a local one on this cluster with local=true",
    ),
];

/// The stored response of one forwarded request.
#[derive(Serialize, Deserialize)]
struct Record {
    /// When the record may be deleted.
    expires_at: Timestamp,
    /// SHA-256 of the operation, path and data, so a reused request id with another request
    /// is detected rather than given the first request's response.
    fingerprint: String,
    /// The response.
    result: ForwardedResult,
}

/// Runs `forwarded` from `secondary_id` at most once, in `txn`, and returns its response.
///
/// `secondary_id` must come from the secondary's certificate. Errors from the handler come
/// back as `Err`, and the caller must then drop `txn`'s writes; the response of a success is
/// recorded for `retry_window`.
pub fn execute_forwarded(
    core: &Core,
    ctx: &mut Ctx<'_>,
    secondary_id: &str,
    forwarded: &ForwardedRequest,
    retry_window: Duration,
    txn: &mut dyn Transaction,
) -> Result<ForwardedResult, Error> {
    check_request_id(&forwarded.request_id)?;
    let record_key = record_key(secondary_id, &forwarded.request_id);
    let fingerprint = fingerprint(forwarded);
    let recorded: Option<Record> = {
        let view = core.barrier.view(txn, ctx.rng)?;
        view.get_json(Partition::Shared, &record_key)?
    };
    if let Some(record) = recorded.filter(|record| record.expires_at > ctx.now) {
        if record.fingerprint != fingerprint {
            return Err(Error::bad_request(format!(
                "request id {} of secondary {secondary_id} was already used for another \
                 request; send a new request id",
                forwarded.request_id
            )));
        }
        return Ok(record.result);
    }

    check_forwardable(&forwarded.path)?;
    let request = forwarded.to_request()?;
    let caller = forwarded.caller();
    let response = {
        let mut guarded = Guarded::new(txn, &[Partition::Local]);
        let result = core.dispatch_unguarded(ctx, &request, Some(&caller), &mut guarded);
        if guarded.refused() {
            return Err(Error::bad_request(format!(
                "{} cannot be forwarded to the primary because it writes the primary's local \
                 state; send it to the primary directly",
                forwarded.path
            )));
        }
        result?
    };

    let result = ForwardedResult::from_result(&Ok(response));
    let expires_at = ctx.now.saturating_add(retry_window);
    let record = Record {
        expires_at,
        fingerprint,
        result: result.clone(),
    };
    let mut view = core.barrier.view(txn, ctx.rng)?;
    view.put_json(Partition::Shared, &record_key, &record)?;
    let expiry_key = format!(
        "{EXPIRY_PREFIX}{:020}/{secondary_id}/{}",
        expires_at.as_nanos(),
        forwarded.request_id
    );
    view.put(Partition::Shared, &expiry_key, b"")?;
    delete_expired(txn, ctx.now)?;
    Ok(result)
}

/// Rejects the paths a forward never runs, with 400 naming the path and the reason.
pub fn check_forwardable(path: &str) -> Result<(), Error> {
    let path = path.trim_end_matches('/');
    let rejected = UNFORWARDABLE_PREFIXES.iter().find(|(prefix, _)| {
        path == *prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('-'))
    });
    if let Some((_, reason)) = rejected {
        return Err(Error::bad_request(format!(
            "{path} cannot be forwarded from a performance secondary: {reason}"
        )));
    }
    if is_login(path) {
        return Err(Error::bad_request(format!(
            "{path} cannot be forwarded from a performance secondary: logins issue tokens on \
             the cluster the client talks to"
        )));
    }
    Ok(())
}

/// Deletes up to [`CLEANUP_BATCH`] records that expired at or before `now`, oldest first.
pub fn delete_expired(txn: &mut dyn Transaction, now: Timestamp) -> Result<usize, Error> {
    let keys = txn.scan(Partition::Shared, EXPIRY_PREFIX, None, Some(CLEANUP_BATCH))?;
    let mut deleted = 0;
    for key in keys {
        let Some((expires_at, secondary_id, request_id)) = parse_expiry_key(&key) else {
            // An index key this version did not write: drop it so it cannot block cleanup.
            txn.delete(Partition::Shared, &key)?;
            continue;
        };
        if expires_at > now.as_nanos() {
            break;
        }
        txn.delete(Partition::Shared, &record_key(secondary_id, request_id))?;
        txn.delete(Partition::Shared, &key)?;
        deleted += 1;
    }
    Ok(deleted)
}

fn parse_expiry_key(key: &str) -> Option<(u64, &str, &str)> {
    let rest = key.strip_prefix(EXPIRY_PREFIX)?;
    let (expires_at, rest) = rest.split_once('/')?;
    let (secondary_id, request_id) = rest.split_once('/')?;
    Some((expires_at.parse().ok()?, secondary_id, request_id))
}

fn record_key(secondary_id: &str, request_id: &str) -> String {
    format!("{RECORD_PREFIX}{secondary_id}/{request_id}")
}

fn is_login(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("auth/") else {
        return false;
    };
    rest.split('/').skip(1).any(|segment| segment == "login")
}

fn check_request_id(request_id: &str) -> Result<(), Error> {
    let valid = !request_id.is_empty()
        && request_id.len() <= MAX_REQUEST_ID_LEN
        && request_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "invalid forwarded request id {:?}: expected 1 to {MAX_REQUEST_ID_LEN} letters, digits, \
         '-' or '_'",
        request_id
            .chars()
            .take(MAX_REQUEST_ID_LEN)
            .collect::<String>()
    )))
}

fn fingerprint(forwarded: &ForwardedRequest) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{:?}", forwarded.operation).as_bytes());
    hasher.update([0]);
    hasher.update(forwarded.path.as_bytes());
    hasher.update([0]);
    hasher.update(forwarded.data_json.as_bytes());
    hex::encode(hasher.finalize())
}
