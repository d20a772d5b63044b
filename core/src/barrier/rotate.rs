//! `sys/key-status` and `sys/rotate`: the keyring's active term and adding a new one.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::seal::store_keyring;
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::storage::Transaction;

/// Builds the `sys/key-status` data: `term`, `install_time` and `encryptions`.
pub fn key_status(core: &Core) -> Result<Map<String, Value>, Error> {
    let keyring = core.barrier.keyring()?;
    let mut data = Map::new();
    data.insert("term".into(), Value::from(keyring.active_term()));
    data.insert(
        "install_time".into(),
        Value::from(keyring.active_installed().to_rfc3339()),
    );
    data.insert("encryptions".into(), Value::from(keyring.encryptions()));
    Ok(data)
}

/// Handles `PUT sys/rotate`: adds a keyring term, stores the keyring under the root key, and
/// only then makes the new term active in memory. Old terms keep decrypting.
pub fn rotate(core: &Core, ctx: &mut Ctx<'_>, txn: &mut dyn Transaction) -> Result<(), Error> {
    let state = core.barrier.seal_state();
    let root_key = state.root_key.as_ref().ok_or_else(Error::sealed)?;
    let rotated = core.barrier.keyring()?.rotated(ctx.rng, ctx.now);
    store_keyring(txn, root_key, &rotated, ctx.rng)?;
    let term = rotated.active_term();
    core.barrier.set_keyring(Some(Arc::new(rotated)));
    tracing::info!(term, "barrier keyring rotated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::seal::KEYRING_KEY;
    use crate::barrier::testing::{TestNode, body_of, status_of};
    use crate::request::{Operation, Request};
    use crate::storage::{Partition, Storage};
    use crate::time::Timestamp;

    fn key_status_body(node: &mut TestNode) -> Value {
        let request = Request::new(Operation::Read, "sys/key-status");
        body_of(node.request_as_root(request).unwrap())
    }

    #[test]
    fn key_status_reports_active_term() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        let body = key_status_body(&mut node);
        assert_eq!(body["term"], json!(1));
        assert_eq!(body["install_time"], json!(node.now.to_rfc3339()));
        assert!(body["encryptions"].is_u64());
    }

    #[test]
    fn rotate_increases_term_and_old_values_decrypt() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(3, 2);
        let old = node.core.barrier.keyring().unwrap();
        let sealed = old.encrypt(Partition::Shared, "x", b"before", &mut node.rng);
        node.now = Timestamp::from_secs(1_800_000_000);
        let response = node.request_as_root(Request::new(Operation::Update, "sys/rotate"));
        assert_eq!(status_of(&response.unwrap()), 204);
        let body = key_status_body(&mut node);
        assert_eq!(body["term"], json!(2));
        assert_eq!(body["install_time"], json!(node.now.to_rfc3339()));

        // The stored keyring has the new term too: seal, unseal and decrypt the old value.
        node.core.barrier.seal();
        for key in &keys[..2] {
            node.unseal(key).unwrap();
        }
        let reloaded = node.core.barrier.keyring().unwrap();
        assert_eq!(reloaded.active_term(), 2);
        let opened = reloaded.decrypt(Partition::Shared, "x", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"before");
    }

    #[test]
    fn replicated_rotation_reloads_keyring() {
        let mut primary = TestNode::new();
        let keys = primary.init_and_unseal(3, 2);
        let mut secondary = TestNode::new();
        secondary.storage = primary.storage.clone();
        for key in &keys[..2] {
            secondary.unseal(key).unwrap();
        }
        primary
            .request_as_root(Request::new(Operation::Update, "sys/rotate"))
            .unwrap();
        let unrelated = [(Partition::Shared, "sys/policy/x".to_owned())];
        let changed = [(Partition::Shared, KEYRING_KEY.to_owned())];
        let barrier = &secondary.core.barrier;
        let reload = |changed: &[(Partition, String)]| {
            secondary
                .storage
                .read(|txn| barrier.reload(txn, Some(changed)))
        };
        reload(&unrelated).unwrap().unwrap();
        assert_eq!(barrier.keyring().unwrap().active_term(), 1);
        reload(&changed).unwrap().unwrap();
        assert_eq!(barrier.keyring().unwrap().active_term(), 2);
    }

    #[test]
    fn rotate_while_sealed_is_rejected() {
        let mut node = TestNode::new();
        node.init_without_token(3, 2);
        let stored = node.storage.dump(Partition::Shared);
        let result = node
            .storage
            .write(|txn| rotate(&node.core, &mut Ctx::new(node.now, &mut node.rng), txn));
        assert_eq!(result.unwrap_err(), Error::sealed());
        assert_eq!(node.storage.dump(Partition::Shared), stored);
    }
}
