//! `sys/seal-status`, `sys/unseal` and `sys/seal`.

use serde_json::{Map, Value, json};

use super::params;
use super::seal::{SealConfig, SealState, load_keyring, read_cluster_info, read_seal_config};
use super::shamir::{combine, decode_share};
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::ids;
use crate::storage::Transaction;

/// Builds the `sys/seal-status` body.
pub fn seal_status(core: &Core, txn: &dyn Transaction) -> Result<Value, Error> {
    let state = core.barrier.seal_state();
    status_body(core, &state, txn)
}

/// Handles `PUT sys/unseal`: `reset` discards the submitted keys; a `key` adds one, and the
/// threshold-th key rebuilds the root key, opens the keyring and unseals.
///
/// Nothing here writes storage, so the read-only first run of the request is the only run and
/// its in-memory effects happen once.
pub fn unseal(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &dyn Transaction,
) -> Result<Value, Error> {
    let config = require_config(txn)?;
    let reset = params::boolean(data, "reset")?;
    if params::boolean(data, "migrate")? {
        return Err(Error::bad_request("Vault is not in seal migration mode"));
    }
    let key = params::string(data, "key")?;
    let mut state = core.barrier.seal_state();
    if reset {
        state.unseal = Default::default();
    } else if core.barrier.is_sealed() {
        let key = key.ok_or_else(|| {
            Error::bad_request(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            )
        })?;
        submit(core, ctx, &mut state, &config, key, txn)?;
    }
    status_body(core, &state, txn)
}

/// Handles `PUT sys/seal`. The caller needs the root policy.
pub fn seal(core: &Core, is_root: bool) -> Result<(), Error> {
    // NOTE: Vault also lets a policy with `sudo` on `sys/seal` seal. Only the root policy is
    // checked here; granting it by policy is left to the ACL layer's root-protected paths.
    if !is_root {
        return Err(Error::permission_denied());
    }
    core.barrier.seal();
    tracing::info!("barrier sealed");
    Ok(())
}

fn submit(
    core: &Core,
    ctx: &mut Ctx<'_>,
    state: &mut SealState,
    config: &SealConfig,
    key: &str,
    txn: &dyn Transaction,
) -> Result<(), Error> {
    let share = decode_share(key)?;
    let added = state.unseal.add(share)?;
    if added && state.unseal.len() == 1 {
        state.unseal.nonce = ids::uuid(ctx.rng);
    }
    if state.unseal.len() < usize::from(config.secret_threshold) {
        return Ok(());
    }
    // Progress is spent whether or not the keys were right.
    let progress = std::mem::take(&mut state.unseal);
    let root_key = combine(progress.shares())?;
    let keyring = load_keyring(txn, &root_key)?;
    core.barrier.install(state, root_key, keyring);
    if let Err(error) = core.reload(txn, None) {
        state.clear();
        core.barrier.set_keyring(None);
        return Err(error);
    }
    tracing::info!("barrier unsealed");
    Ok(())
}

/// Reads the seal configuration, or fails with 400 before `sys/init`.
pub fn require_config(txn: &dyn Transaction) -> Result<SealConfig, Error> {
    read_seal_config(txn)?.ok_or_else(|| Error::bad_request("Vault is not initialized"))
}

fn status_body(core: &Core, state: &SealState, txn: &dyn Transaction) -> Result<Value, Error> {
    let config = read_seal_config(txn)?;
    let sealed = core.barrier.is_sealed();
    let mut body = json!({
        "type": "shamir",
        "initialized": config.is_some(),
        "sealed": sealed,
        "t": config.map_or(0, |config| config.secret_threshold),
        "n": config.map_or(0, |config| config.secret_shares),
        "progress": state.unseal.len(),
        "nonce": state.unseal.nonce,
        "version": core.config.version,
        "build_date": "",
        "migration": false,
        "recovery_seal": false,
        // NOTE: the storage backend is not known to the core, so this stays empty.
        "storage_type": "",
    });
    if !sealed {
        if let Some(cluster) = read_cluster_info(txn)? {
            body["cluster_name"] = Value::from(cluster.name);
            body["cluster_id"] = Value::from(cluster.id);
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::testing::{TestNode, body_of, status_of};
    use crate::request::{Operation, Request};

    fn status(node: &mut TestNode) -> Value {
        body_of(
            node.request(Request::new(Operation::Read, "sys/seal-status"))
                .unwrap(),
        )
    }

    fn subsets_of_three(n: usize) -> Vec<[usize; 3]> {
        let mut out = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                for c in b + 1..n {
                    out.push([a, b, c]);
                }
            }
        }
        out
    }

    #[test]
    fn unseal_with_any_threshold_subset() {
        for subset in subsets_of_three(5) {
            let mut node = TestNode::new();
            let keys = node.init_without_token(5, 3);
            // Submit in reverse order as well, since order must not matter.
            for (step, index) in subset.iter().rev().enumerate() {
                let body = node.unseal(&keys[*index]).unwrap();
                let done = step == 2;
                assert_eq!(
                    body["sealed"],
                    json!(!done),
                    "subset {subset:?}, step {step}"
                );
                let expected_progress = if done { 0 } else { step + 1 };
                assert_eq!(
                    body["progress"],
                    json!(expected_progress),
                    "subset {subset:?}"
                );
            }
            assert!(!node.core.barrier.is_sealed(), "subset {subset:?}");
            assert!(node.core.barrier.keyring().is_ok());
        }
    }

    #[test]
    fn status_reports_progress_and_settings() {
        let mut node = TestNode::new();
        let uninitialised = status(&mut node);
        assert_eq!(uninitialised["initialized"], json!(false));
        assert_eq!(uninitialised["type"], json!("shamir"));
        let keys = node.init_without_token(5, 3);
        node.unseal(&keys[1]).unwrap();
        let body = node.unseal(&keys[2]).unwrap();
        assert_eq!(body["sealed"], json!(true));
        assert_eq!(body["t"], json!(3));
        assert_eq!(body["n"], json!(5));
        assert_eq!(body["progress"], json!(2));
        assert_eq!(body["nonce"].as_str().unwrap().len(), 36);
        assert_eq!(body["version"], json!(node.core.config.version));
        assert!(body.get("cluster_id").is_none());
        assert_eq!(status(&mut node), body);
    }

    #[test]
    fn unsealed_status_names_the_cluster() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        let body = status(&mut node);
        assert_eq!(body["sealed"], json!(false));
        assert!(
            body["cluster_name"]
                .as_str()
                .unwrap()
                .starts_with("vault-cluster-")
        );
        assert_eq!(body["cluster_id"].as_str().unwrap().len(), 36);
    }

    #[test]
    fn reset_discards_progress() {
        let mut node = TestNode::new();
        let keys = node.init_without_token(5, 3);
        node.unseal(&keys[0]).unwrap();
        node.unseal(&keys[1]).unwrap();
        let reset = Request::new(Operation::Update, "sys/unseal").with_data(json!({"reset": true}));
        let body = body_of(node.request(reset).unwrap());
        assert_eq!(body["progress"], json!(0));
        assert_eq!(body["sealed"], json!(true));
        node.unseal(&keys[2]).unwrap();
        node.unseal(&keys[3]).unwrap();
        assert!(node.core.barrier.is_sealed());
        let body = node.unseal(&keys[0]).unwrap();
        assert_eq!(body["sealed"], json!(false));
    }

    #[test]
    fn key_after_unseal_returns_status() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(5, 3);
        let body = node.unseal(&keys[4]).unwrap();
        assert_eq!(body["sealed"], json!(false));
        assert_eq!(body["progress"], json!(0));
    }

    #[test]
    fn repeated_key_does_not_count_twice() {
        let mut node = TestNode::new();
        let keys = node.init_without_token(5, 3);
        node.unseal(&keys[0]).unwrap();
        let body = node.unseal(&keys[0]).unwrap();
        assert_eq!(body["progress"], json!(1));
    }

    #[test]
    fn keys_of_another_vault_give_clear_error() {
        let mut node = TestNode::new();
        node.init_without_token(5, 3);
        let mut other = TestNode::new();
        other.rng = rand_core::SeedableRng::seed_from_u64(99);
        let foreign = other.init_without_token(5, 3);
        node.unseal(&foreign[0]).unwrap();
        node.unseal(&foreign[1]).unwrap();
        let error = node.unseal(&foreign[2]).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("do not rebuild"), "{error}");
        assert_eq!(status(&mut node)["progress"], json!(0));
        assert!(node.core.barrier.is_sealed());
    }

    #[test]
    fn bad_key_encoding_names_the_problem() {
        let mut node = TestNode::new();
        node.init_without_token(5, 3);
        let cases = [
            ("zz-not-a-key", "neither hex nor base64"),
            ("abcd", "decodes to 2 bytes"),
            (&format!("{}00", "11".repeat(32)), "x-coordinate byte is 0"),
        ];
        for (key, expected) in cases {
            let error = node.unseal(key).unwrap_err();
            assert_eq!(error.status(), 400, "key {key}");
            assert!(error.to_string().contains(expected), "key {key}: {error}");
        }
        let missing = Request::new(Operation::Update, "sys/unseal");
        let error = node.request(missing).unwrap_err();
        assert!(
            error.to_string().contains("'key' must be specified"),
            "{error}"
        );
    }

    #[test]
    fn seal_migration_is_rejected() {
        let mut node = TestNode::new();
        let keys = node.init_without_token(3, 2);
        let request = Request::new(Operation::Update, "sys/unseal")
            .with_data(json!({"key": keys[0], "migrate": true}));
        let error = node.request(request).unwrap_err();
        assert_eq!(
            error,
            Error::bad_request("Vault is not in seal migration mode")
        );
        assert_eq!(status(&mut node)["progress"], json!(0));
    }

    #[test]
    fn unseal_before_init_is_rejected() {
        let mut node = TestNode::new();
        let error = node.unseal(&"11".repeat(33)).unwrap_err();
        assert_eq!(error, Error::bad_request("Vault is not initialized"));
    }

    #[test]
    fn seal_drops_keyring() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(5, 3);
        let response = node.request_as_root(Request::new(Operation::Update, "sys/seal"));
        assert_eq!(status_of(&response.unwrap()), 204);
        assert_eq!(node.core.barrier.keyring().unwrap_err(), Error::sealed());
        assert!(node.core.barrier.seal_state().root_key.is_none());
        assert_eq!(status(&mut node)["sealed"], json!(true));
        for key in &keys[2..] {
            node.unseal(key).unwrap();
        }
        assert!(!node.core.barrier.is_sealed());
    }

    #[test]
    fn validate_rejects_keyring_without_root_key() {
        let mut node = TestNode::new();
        assert_eq!(node.core.barrier.validate(), Ok(()));
        let keyring = crate::barrier::Keyring::generate(&mut node.rng, node.now);
        node.core
            .barrier
            .set_keyring(Some(std::sync::Arc::new(keyring)));
        assert!(node.core.barrier.validate().is_err());
        node.core.barrier.seal();
        assert_eq!(node.core.barrier.validate(), Ok(()));
    }

    #[test]
    fn seal_needs_root() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        assert_eq!(
            seal(&node.core, false).unwrap_err(),
            Error::permission_denied()
        );
        assert!(!node.core.barrier.is_sealed());
    }
}
