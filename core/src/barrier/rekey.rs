//! `sys/rekey/*`: new key shares from a threshold of the current ones.
//!
//! By default the root key stays the same and only its shares change. With
//! `"rotate_root_key": true` in the `sys/rekey/init` body, a new root key is generated and
//! the keyring is re-encrypted under it, so the old shares stop working.
//!
//! NOTE: without `rotate_root_key`, a new-threshold number of old shares still rebuilds the
//! unchanged root key. Old shares therefore keep unsealing unless the threshold went down;
//! Vault always replaces the root key on rekey, which `rotate_root_key` matches.

use std::fmt;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::generate_root::key_and_nonce;
use super::init::{check_config, shares_json, split_root_key};
use super::params;
use super::seal::{
    Progress, RootKey, SealConfig, SealState, load_keyring, store_keyring, write_seal_config,
};
use super::shamir::{ROOT_KEY_LEN, combine, decode_share};
use super::unseal::require_config;
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::ids;
use crate::storage::Transaction;

/// A rekey in progress: the new settings and the current shares submitted so far.
#[derive(Clone)]
pub struct Rekey {
    config: SealConfig,
    rotate_root_key: bool,
    progress: Progress,
}

impl fmt::Debug for Rekey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rekey")
            .field("config", &self.config)
            .field("rotate_root_key", &self.rotate_root_key)
            .field("progress", &self.progress.len())
            .finish_non_exhaustive()
    }
}

/// Handles `GET sys/rekey/init`.
pub fn status(core: &Core, txn: &dyn Transaction) -> Result<Value, Error> {
    let current = require_config(txn)?;
    let state = core.barrier.seal_state();
    Ok(status_body(state.rekey.as_ref(), &current))
}

/// Handles `PUT sys/rekey/init`: starts a rekey to `secret_shares` and `secret_threshold`.
pub fn start(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &dyn Transaction,
) -> Result<Value, Error> {
    let current = require_config(txn)?;
    core.barrier.keyring()?;
    let rekey = parse_start(data, ctx)?;
    let mut state = core.barrier.seal_state();
    if state.rekey.is_some() {
        return Err(Error::bad_request(
            "rekey already in progress; cancel it with DELETE sys/rekey/init",
        ));
    }
    let body = status_body(Some(&rekey), &current);
    state.rekey = Some(rekey);
    Ok(body)
}

/// Handles `DELETE sys/rekey/init`.
pub fn cancel(core: &Core) {
    core.barrier.seal_state().rekey = None;
}

/// Handles `PUT sys/rekey/update`: adds a current share and, at the current threshold, stores
/// the new settings (and, when rotating, the re-encrypted keyring) and returns the new shares.
///
/// Storage is written before the in-memory root key and attempt change, so a read-only first
/// run that must be rerun on the writer leaves them as they were.
pub fn update(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &mut dyn Transaction,
) -> Result<Value, Error> {
    let current = require_config(txn)?;
    core.barrier.keyring()?;
    let (key, nonce) = key_and_nonce(data)?;
    let share = decode_share(key)?;
    let mut state = core.barrier.seal_state();
    let mut rekey = current_rekey(&state, nonce)?;
    rekey.progress.add(share)?;
    if rekey.progress.len() < usize::from(current.secret_threshold) {
        let body = status_body(Some(&rekey), &current);
        state.rekey = Some(rekey);
        return Ok(body);
    }
    let root_key = match verified_root_key(&rekey, txn) {
        Ok(root_key) => root_key,
        Err(error) => {
            reset_progress(&mut state);
            return Err(error);
        }
    };
    let new_root_key = write_new_settings(core, ctx, &rekey, root_key, txn)?;
    let shares = split_root_key(&new_root_key, &rekey.config, ctx)?;
    state.root_key = Some(new_root_key);
    state.rekey = None;
    tracing::info!(rotated = rekey.rotate_root_key, "barrier rekeyed");
    let mut body = shares_json(&shares);
    body.insert("complete".into(), Value::Bool(true));
    body.insert("nonce".into(), Value::from(rekey.progress.nonce.as_str()));
    body.insert("backup".into(), Value::Bool(false));
    body.insert("verification_required".into(), Value::Bool(false));
    body.insert("pgp_fingerprints".into(), Value::Null);
    Ok(Value::Object(body))
}

fn parse_start(data: &Map<String, Value>, ctx: &mut Ctx<'_>) -> Result<Rekey, Error> {
    if params::has_entries(data, "pgp_keys")? {
        return Err(Error::bad_request("PGP keys are not supported"));
    }
    if params::boolean(data, "backup")? {
        return Err(Error::bad_request(
            "backup is not supported: it needs PGP keys, which are not supported",
        ));
    }
    if params::boolean(data, "require_verification")? {
        return Err(Error::bad_request("require_verification is not supported"));
    }
    let config = SealConfig {
        secret_shares: params::share_count(data, "secret_shares")?.unwrap_or(0),
        secret_threshold: params::share_count(data, "secret_threshold")?.unwrap_or(0),
    };
    check_config(&config)?;
    Ok(Rekey {
        config,
        rotate_root_key: params::boolean(data, "rotate_root_key")?,
        progress: Progress::new(ids::uuid(ctx.rng)),
    })
}

fn current_rekey(state: &SealState, nonce: &str) -> Result<Rekey, Error> {
    let rekey = state
        .rekey
        .as_ref()
        .ok_or_else(|| Error::bad_request("no rekey in progress"))?;
    if rekey.progress.nonce != nonce {
        return Err(Error::bad_request(format!(
            "incorrect nonce {nonce:?}: the rekey in progress has nonce {:?}",
            rekey.progress.nonce
        )));
    }
    Ok(rekey.clone())
}

fn verified_root_key(rekey: &Rekey, txn: &dyn Transaction) -> Result<RootKey, Error> {
    let root_key = combine(rekey.progress.shares())?;
    load_keyring(txn, &root_key)?;
    Ok(root_key)
}

/// Stores the new settings and, when rotating, the keyring under a fresh root key. Returns
/// the root key the new shares must protect.
fn write_new_settings(
    core: &Core,
    ctx: &mut Ctx<'_>,
    rekey: &Rekey,
    root_key: RootKey,
    txn: &mut dyn Transaction,
) -> Result<RootKey, Error> {
    let root_key = if rekey.rotate_root_key {
        let mut fresh = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        ctx.rng.fill_bytes(fresh.as_mut());
        let keyring = core.barrier.keyring()?;
        store_keyring(txn, &fresh, &keyring, ctx.rng)?;
        fresh
    } else {
        root_key
    };
    write_seal_config(txn, &rekey.config)?;
    Ok(root_key)
}

fn reset_progress(state: &mut SealState) {
    if let Some(rekey) = state.rekey.as_mut() {
        rekey.progress = Progress::new(rekey.progress.nonce.clone());
    }
}

fn status_body(rekey: Option<&Rekey>, current: &SealConfig) -> Value {
    json!({
        "started": rekey.is_some(),
        "nonce": rekey.map_or("", |rekey| rekey.progress.nonce.as_str()),
        "t": rekey.map_or(0, |rekey| rekey.config.secret_threshold),
        "n": rekey.map_or(0, |rekey| rekey.config.secret_shares),
        "progress": rekey.map_or(0, |rekey| rekey.progress.len()),
        "required": current.secret_threshold,
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": false,
        "verification_nonce": "",
        "rotate_root_key": rekey.is_some_and(|rekey| rekey.rotate_root_key),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::seal::KEYRING_KEY;
    use crate::barrier::testing::{TestNode, body_of, status_of};
    use crate::request::{Operation, Request};
    use crate::storage::{Partition, Storage};

    fn start_rekey(node: &mut TestNode, body: Value) -> Result<Value, Error> {
        let request = Request::new(Operation::Update, "sys/rekey/init").with_data(body);
        node.request(request).map(body_of)
    }

    fn update(node: &mut TestNode, key: &str, nonce: &str) -> Result<Value, Error> {
        let request = Request::new(Operation::Update, "sys/rekey/update")
            .with_data(json!({"key": key, "nonce": nonce}));
        node.request(request).map(body_of)
    }

    fn string_list(value: &Value) -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap().to_owned())
            .collect()
    }

    /// The shares and state around a rekey of a 5-share, threshold-3 node to 4 shares with
    /// threshold 2.
    struct Rekeyed {
        old: Vec<String>,
        new: Vec<String>,
        root_before: RootKey,
        keyring_before: Option<Vec<u8>>,
    }

    fn rekey(node: &mut TestNode, rotate_root_key: bool) -> Rekeyed {
        let old = node.init_and_unseal(5, 3);
        let root_before = root_key(node);
        let keyring_before = keyring_record(node);
        let body = json!({
            "secret_shares": 4, "secret_threshold": 2, "rotate_root_key": rotate_root_key
        });
        let started = start_rekey(node, body).unwrap();
        assert_eq!(started["started"], json!(true));
        assert_eq!(started["required"], json!(3));
        let nonce = started["nonce"].as_str().unwrap().to_owned();
        assert_eq!(update(node, &old[4], &nonce).unwrap()["progress"], json!(1));
        assert_eq!(update(node, &old[0], &nonce).unwrap()["progress"], json!(2));
        let done = update(node, &old[2], &nonce).unwrap();
        assert_eq!(done["complete"], json!(true));
        assert_eq!(done["nonce"], json!(nonce));
        assert_eq!(done["backup"], json!(false));
        assert_eq!(done["verification_required"], json!(false));
        let new = string_list(&done["keys"]);
        assert_eq!(new.len(), 4);
        assert_eq!(string_list(&done["keys_base64"]).len(), 4);
        Rekeyed {
            old,
            new,
            root_before,
            keyring_before,
        }
    }

    fn root_key(node: &TestNode) -> RootKey {
        node.core.barrier.seal_state().root_key.clone().unwrap()
    }

    fn keyring_record(node: &TestNode) -> Option<Vec<u8>> {
        node.storage
            .dump(Partition::Shared)
            .into_iter()
            .find(|(key, _)| key == KEYRING_KEY)
            .map(|(_, value)| value)
    }

    fn assert_new_shares_unseal(node: &mut TestNode, rekeyed: &Rekeyed) {
        node.core.barrier.seal();
        let request = Request::new(Operation::Read, "sys/seal-status");
        let status = body_of(node.request(request).unwrap());
        assert_eq!(status["t"], json!(2));
        assert_eq!(status["n"], json!(4));
        node.unseal(&rekeyed.old[0]).unwrap();
        let error = node.unseal(&rekeyed.old[1]).unwrap_err();
        assert!(error.to_string().contains("do not rebuild"), "{error}");
        node.unseal(&rekeyed.new[3]).unwrap();
        let body = node.unseal(&rekeyed.new[1]).unwrap();
        assert_eq!(body["sealed"], json!(false));
    }

    #[test]
    fn rekey_keeps_root_key_by_default() {
        let mut node = TestNode::new();
        let rekeyed = rekey(&mut node, false);
        assert_eq!(root_key(&node), rekeyed.root_before);
        assert_eq!(keyring_record(&node), rekeyed.keyring_before);
        assert_new_shares_unseal(&mut node, &rekeyed);
        assert_eq!(root_key(&node), rekeyed.root_before);
    }

    #[test]
    fn rekey_with_rotation_replaces_root_key() {
        let mut node = TestNode::new();
        let rekeyed = rekey(&mut node, true);
        let root_after = root_key(&node);
        assert_ne!(*root_after, *rekeyed.root_before);
        assert_ne!(keyring_record(&node), rekeyed.keyring_before);
        assert_new_shares_unseal(&mut node, &rekeyed);
        assert_eq!(root_key(&node), root_after);
        assert_eq!(node.core.barrier.keyring().unwrap().active_term(), 1);
    }

    /// Rekeys `node` from 5 shares with threshold 3 to the same settings and returns the old
    /// and new shares.
    fn rekey_same_settings(
        node: &mut TestNode,
        rotate_root_key: bool,
    ) -> (Vec<String>, Vec<String>) {
        let old = node.init_and_unseal(5, 3);
        let body = json!({
            "secret_shares": 5, "secret_threshold": 3, "rotate_root_key": rotate_root_key
        });
        let started = start_rekey(node, body).unwrap();
        let nonce = started["nonce"].as_str().unwrap().to_owned();
        update(node, &old[0], &nonce).unwrap();
        update(node, &old[1], &nonce).unwrap();
        let done = update(node, &old[2], &nonce).unwrap();
        node.core.barrier.seal();
        (old, string_list(&done["keys"]))
    }

    #[test]
    fn rotated_rekey_retires_old_shares() {
        let mut node = TestNode::new();
        let (old, new) = rekey_same_settings(&mut node, true);
        node.unseal(&old[2]).unwrap();
        node.unseal(&old[3]).unwrap();
        let error = node.unseal(&old[4]).unwrap_err();
        assert!(error.to_string().contains("do not rebuild"), "{error}");
        for key in &new[2..] {
            node.unseal(key).unwrap();
        }
        assert!(!node.core.barrier.is_sealed());
    }

    #[test]
    fn plain_rekey_keeps_old_shares_at_same_threshold() {
        let mut node = TestNode::new();
        let (old, new) = rekey_same_settings(&mut node, false);
        for key in &old[2..] {
            node.unseal(key).unwrap();
        }
        assert!(
            !node.core.barrier.is_sealed(),
            "old shares rebuild the same root key"
        );
        node.core.barrier.seal();
        for key in &new[..3] {
            node.unseal(key).unwrap();
        }
        assert!(!node.core.barrier.is_sealed());
    }

    #[test]
    fn rekey_init_validates_settings() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        let error = start_rekey(
            &mut node,
            json!({"secret_shares": 2, "secret_threshold": 3}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("cannot be larger"), "{error}");
        let error = start_rekey(
            &mut node,
            json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": ["a"]}),
        )
        .unwrap_err();
        assert_eq!(error, Error::bad_request("PGP keys are not supported"));
        let error = start_rekey(&mut node, json!({})).unwrap_err();
        assert!(error.to_string().contains("secret_shares"), "{error}");
    }

    #[test]
    fn rekey_status_and_cancel() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        let idle = body_of(
            node.request(Request::new(Operation::Read, "sys/rekey/init"))
                .unwrap(),
        );
        assert_eq!(idle["started"], json!(false));
        assert_eq!(idle["required"], json!(2));
        start_rekey(
            &mut node,
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .unwrap();
        let again = start_rekey(
            &mut node,
            json!({"secret_shares": 3, "secret_threshold": 2}),
        );
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("already in progress")
        );
        let busy = body_of(
            node.request(Request::new(Operation::Read, "sys/rekey/init"))
                .unwrap(),
        );
        assert_eq!(busy["started"], json!(true));
        assert_eq!(busy["n"], json!(3));
        let cancel = node.request(Request::new(Operation::Delete, "sys/rekey/init"));
        assert_eq!(status_of(&cancel.unwrap()), 204);
        let idle = body_of(
            node.request(Request::new(Operation::Read, "sys/rekey/init"))
                .unwrap(),
        );
        assert_eq!(idle["started"], json!(false));
    }

    #[test]
    fn read_only_run_leaves_rekey_unchanged() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(3, 2);
        let body = json!({"secret_shares": 3, "secret_threshold": 2, "rotate_root_key": true});
        let started = start_rekey(&mut node, body).unwrap();
        let nonce = started["nonce"].as_str().unwrap().to_owned();
        update(&mut node, &keys[0], &nonce).unwrap();
        let root_before = root_key(&node);
        let request = Request::new(Operation::Update, "sys/rekey/update")
            .with_data(json!({"key": keys[1], "nonce": nonce}));
        let TestNode {
            core,
            storage,
            rng,
            now,
        } = &mut node;
        let outcome = storage
            .read(|txn| {
                let mut ctx = crate::Ctx::new(*now, rng);
                core.handle_request(&mut ctx, &request, &mut crate::storage::ReadOnly(txn))
            })
            .unwrap();
        assert!(matches!(
            outcome,
            crate::Outcome::ReadOnly(Partition::Shared)
        ));
        assert_eq!(root_key(&node), root_before);
        let status = body_of(
            node.request(Request::new(Operation::Read, "sys/rekey/init"))
                .unwrap(),
        );
        assert_eq!(status["progress"], json!(1));
        assert_eq!(status["started"], json!(true));
    }

    #[test]
    fn rekey_with_wrong_nonce_is_rejected() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(3, 2);
        start_rekey(
            &mut node,
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .unwrap();
        let error = update(&mut node, &keys[0], "other").unwrap_err();
        assert!(error.to_string().contains("incorrect nonce"), "{error}");
    }
}
