//! `sys/init`: creating the root key, the keyring and the first system records.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::SecureView;
use super::keyring::Keyring;
use super::params;
use super::seal::{
    ClusterInfo, RootKey, SealConfig, read_seal_config, store_keyring, write_cluster_info,
    write_seal_config,
};
use super::shamir::{self, ROOT_KEY_LEN, Share};
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::ids;
use crate::storage::Transaction;

/// Checks whether `sys/init` has run, that is, whether the seal configuration exists.
pub fn is_initialized(txn: &dyn Transaction) -> Result<bool, Error> {
    Ok(read_seal_config(txn)?.is_some())
}

/// Handles `PUT sys/init`: writes the seal configuration, the encrypted keyring, the cluster
/// identity, the mount tables, the default policy and a root token, and returns the key shares
/// and the root token.
///
/// The barrier stays sealed afterwards, as in Vault; the caller unseals with the shares.
pub fn initialize(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &mut dyn Transaction,
) -> Result<Value, Error> {
    if is_initialized(txn)? {
        return Err(Error::bad_request("Vault is already initialized"));
    }
    let config = parse_config(data)?;
    let (root_key, keyring) = write_barrier_records(ctx, txn, &config)?;
    let mut view = SecureView::new(txn, Arc::new(keyring), ctx.rng);
    crate::mounts::initialize(core, &mut view, ctx.now)?;
    crate::acl::initialize(core, &mut view)?;
    let root_token = crate::token::create_root_token(core, &mut view, ctx.now)?;
    let shares = split_root_key(&root_key, &config, ctx)?;
    let mut body = shares_json(&shares);
    body.insert("root_token".into(), Value::from(root_token.expose()));
    Ok(Value::Object(body))
}

/// Parses and checks the `sys/init` body. PGP, stored shares and recovery keys are not
/// supported; their zero values, which the CLI always sends, are accepted.
pub fn parse_config(data: &Map<String, Value>) -> Result<SealConfig, Error> {
    reject_unsupported(data)?;
    let secret_shares = required_count(data, "secret_shares")?;
    let secret_threshold = required_count(data, "secret_threshold")?;
    let config = SealConfig {
        secret_shares,
        secret_threshold,
    };
    check_config(&config)?;
    Ok(config)
}

/// Checks share settings with a message naming the field at fault.
pub fn check_config(config: &SealConfig) -> Result<(), Error> {
    let SealConfig {
        secret_shares: shares,
        secret_threshold: threshold,
    } = *config;
    let message = if shares == 0 {
        "secret_shares must be at least 1".to_owned()
    } else if threshold == 0 {
        "secret_threshold must be at least 1".to_owned()
    } else if threshold > shares {
        format!("secret_threshold ({threshold}) cannot be larger than secret_shares ({shares})")
    } else if threshold == 1 && shares > 1 {
        format!("secret_threshold must be at least 2 when secret_shares is more than 1 ({shares})")
    } else {
        return Ok(());
    };
    Err(Error::bad_request(message))
}

/// Generates the root key and keyring and writes the records that stay readable while sealed.
pub fn write_barrier_records(
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
    config: &SealConfig,
) -> Result<(RootKey, Keyring), Error> {
    let mut root_key = Zeroizing::new([0u8; ROOT_KEY_LEN]);
    ctx.rng.fill_bytes(root_key.as_mut());
    let keyring = Keyring::generate(ctx.rng, ctx.now);
    let cluster = ClusterInfo {
        name: format!("vault-cluster-{}", hex::encode(ids::bytes::<4>(ctx.rng))),
        id: ids::uuid(ctx.rng),
    };
    write_seal_config(txn, config)?;
    store_keyring(txn, &root_key, &keyring, ctx.rng)?;
    write_cluster_info(txn, &cluster)?;
    Ok((root_key, keyring))
}

/// Splits the root key into `config.secret_shares` shares with `config.secret_threshold`.
pub fn split_root_key(
    root_key: &RootKey,
    config: &SealConfig,
    ctx: &mut Ctx<'_>,
) -> Result<Vec<Share>, Error> {
    Ok(shamir::split(
        root_key,
        config.secret_shares,
        config.secret_threshold,
        ctx.rng,
    )?)
}

/// `keys` (hex) and `keys_base64`, as `sys/init` and `sys/rekey/update` return them.
pub fn shares_json(shares: &[Share]) -> Map<String, Value> {
    let hex: Vec<Value> = shares
        .iter()
        .map(|share| Value::from(share.to_hex().as_str()))
        .collect();
    let base64: Vec<Value> = shares
        .iter()
        .map(|share| Value::from(share.to_base64().as_str()))
        .collect();
    let mut body = Map::new();
    body.insert("keys".into(), Value::Array(hex));
    body.insert("keys_base64".into(), Value::Array(base64));
    body
}

fn required_count(data: &Map<String, Value>, name: &str) -> Result<u8, Error> {
    params::share_count(data, name)?
        .ok_or_else(|| Error::bad_request(format!("missing required parameter {name}")))
}

fn reject_unsupported(data: &Map<String, Value>) -> Result<(), Error> {
    if params::has_entries(data, "pgp_keys")?
        || params::string(data, "root_token_pgp_key")?.is_some()
    {
        return Err(Error::bad_request("PGP keys are not supported"));
    }
    if params::integer(data, "stored_shares")?.unwrap_or(0) > 0 {
        return Err(Error::bad_request(
            "stored_shares is not supported: the shamir seal stores no keys; send 0",
        ));
    }
    let recovery = params::integer(data, "recovery_shares")?.unwrap_or(0) > 0
        || params::integer(data, "recovery_threshold")?.unwrap_or(0) > 0
        || params::has_entries(data, "recovery_pgp_keys")?;
    if recovery {
        return Err(Error::bad_request(
            "recovery keys are not supported: the shamir seal has none; leave recovery_shares, \
             recovery_threshold and recovery_pgp_keys unset",
        ));
    }
    Ok(())
}

/// Builds the `sys/init` status body.
pub fn status(txn: &dyn Transaction) -> Result<Value, Error> {
    Ok(json!({ "initialized": is_initialized(txn)? }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::testing::{TestNode, body_of};
    use crate::request::{Operation, Request};

    fn init_request(body: Value) -> Request {
        Request::new(Operation::Update, "sys/init").with_data(body)
    }

    fn init_error(node: &mut TestNode, body: Value) -> Error {
        node.request(init_request(body)).unwrap_err()
    }

    #[test]
    fn init_status_reports_whether_initialized() {
        let mut node = TestNode::new();
        let before = node.request(Request::new(Operation::Read, "sys/init"));
        assert_eq!(body_of(before.unwrap()), json!({"initialized": false}));
        node.init_without_token(5, 3);
        let after = node.request(Request::new(Operation::Read, "sys/init"));
        assert_eq!(body_of(after.unwrap()), json!({"initialized": true}));
    }

    #[test]
    fn invalid_settings_are_rejected_with_reasons() {
        let mut node = TestNode::new();
        let cases = [
            (
                json!({"secret_shares": 3, "secret_threshold": 4}),
                "cannot be larger",
            ),
            (
                json!({"secret_shares": 0, "secret_threshold": 0}),
                "secret_shares must be at least 1",
            ),
            (
                json!({"secret_shares": 3, "secret_threshold": 1}),
                "at least 2",
            ),
            (
                json!({"secret_threshold": 1}),
                "missing required parameter secret_shares",
            ),
            (
                json!({"secret_shares": 300, "secret_threshold": 2}),
                "at most 255",
            ),
            (
                json!({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": ["k1", "k2", "k3"]}),
                "PGP keys are not supported",
            ),
            (
                json!({"secret_shares": 3, "secret_threshold": 2, "recovery_shares": 2}),
                "recovery keys are not supported",
            ),
        ];
        for (body, expected) in cases {
            let error = init_error(&mut node, body.clone());
            assert_eq!(error.status(), 400, "body {body}");
            assert!(error.to_string().contains(expected), "body {body}: {error}");
        }
        let status = node.request(Request::new(Operation::Read, "sys/init"));
        assert_eq!(body_of(status.unwrap()), json!({"initialized": false}));
    }

    #[test]
    fn cli_zero_values_are_tolerated() {
        let data = json!({
            "secret_shares": 5, "secret_threshold": 3, "pgp_keys": null,
            "root_token_pgp_key": "", "stored_shares": 0, "recovery_shares": 0,
            "recovery_threshold": 0, "recovery_pgp_keys": null
        });
        let Value::Object(data) = data else {
            unreachable!("literal is an object")
        };
        let config = parse_config(&data).unwrap();
        assert_eq!(config.secret_shares, 5);
        assert_eq!(config.secret_threshold, 3);
    }

    #[test]
    fn second_init_is_rejected() {
        let mut node = TestNode::new();
        node.init_without_token(5, 3);
        let error = init_error(
            &mut node,
            json!({"secret_shares": 5, "secret_threshold": 3}),
        );
        assert_eq!(error, Error::bad_request("Vault is already initialized"));
    }

    #[test]
    fn init_leaves_barrier_sealed() {
        let mut node = TestNode::new();
        node.init_without_token(5, 3);
        assert!(node.core.barrier.is_sealed());
        assert_eq!(node.core.barrier.keyring().unwrap_err(), Error::sealed());
    }

    #[test]
    fn init_returns_keys_and_root_token() {
        let mut node = TestNode::new();
        let response = node.request(init_request(
            json!({"secret_shares": 5, "secret_threshold": 3}),
        ));
        let body = body_of(response.unwrap());
        assert_eq!(body["keys"].as_array().unwrap().len(), 5);
        assert_eq!(body["keys_base64"].as_array().unwrap().len(), 5);
        assert!(body["root_token"].as_str().unwrap().starts_with("hvs."));
        assert!(node.core.barrier.is_sealed());
        let keys: Vec<String> = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap().to_owned())
            .collect();
        for key in &keys[..3] {
            node.unseal(key).unwrap();
        }
        assert!(!node.core.barrier.is_sealed());
    }
}
