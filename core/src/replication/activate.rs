//! Secondary activation, split into steps so the server can run its network steps between
//! them. The order is [`parse_enable`]; unwrap the bundle at the primary (server) and check it
//! with [`check_unwrapped_bundle`](crate::replication::activation::check_unwrapped_bundle);
//! [`activation_key`]; connect to the primary's cluster port and receive its [`KeyOffer`]
//! (server); [`adopt`] in one transaction; [`install`] after the commit; and
//! [`mark_activated`] after the first completed sync.
//!
//! Nothing before [`adopt`] writes, so a failure there leaves the node as it was. [`adopt`]
//! wipes every partition and writes the pending activation record, the primary's barrier
//! records and a position no chain contains, so the first connection runs a Merkle sync. After
//! a restart the node is unsealed with the primary's unseal keys and
//! [`load_role`](crate::replication::role::load_role) returns the pending secondary.

use std::fmt;
use std::sync::Arc;

use rand_core::CryptoRngCore;

use crate::Core;
use crate::barrier::{Keyring, RootKey, SecureView};
use crate::error::Error;
use crate::mounts::{MountEntry, TableKind, save_table};
use crate::replication::activation::bundle::normalise_fingerprint;
use crate::replication::activation::cert::parse_certificate;
use crate::replication::activation::{BootstrapBundle, Claims, PrivateKey, token};
use crate::replication::apply::apply_ops;
use crate::replication::keys::{KeyOffer, OpenedKeys, open_key_offer};
use crate::replication::position::{Epoch, Position};
use crate::replication::role::{SecondaryRecord, load_secondary, save_secondary};
use crate::replication::secondary::UNSYNCED_HASH;
use crate::replication::wal::{Op, Wal};
use crate::request::{Request, Secret};
use crate::storage::{Partition, Transaction};
use crate::sys::replication::state;
use crate::time::Timestamp;

/// The body of `secondary/enable`, checked.
pub struct EnableRequest {
    /// The activation token (a JWT).
    pub token: Secret,
    /// The token's claims, read without checking the signature, which the primary checks.
    pub claims: Claims,
    /// The API address to unwrap at: `primary_api_addr` when given, else the `addr` claim.
    pub primary_api_addr: String,
    /// `ca_file`: a PEM file with the CA that signs the primary's API certificate.
    pub ca_file: Option<String>,
    /// `ca_sha256`: the operator's pin of the replication CA, lowercase hex.
    pub ca_sha256: Option<String>,
}

impl fmt::Debug for EnableRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnableRequest")
            .field("secondary_id", &self.claims.id)
            .field("cluster_id", &self.claims.cluster_id)
            .field("primary_api_addr", &self.primary_api_addr)
            .field("ca_file", &self.ca_file)
            .field("ca_sha256", &self.ca_sha256)
            .finish_non_exhaustive()
    }
}

/// Parses and checks the body of `secondary/enable`. Fails with a 400 that names the field.
pub fn parse_enable(request: &Request) -> Result<EnableRequest, Error> {
    let data = &request.data;
    if let Some(path) = optional(data, "ca_path")? {
        return Err(Error::bad_request(format!(
            "ca_path is not supported (got {path:?}); pass the CA certificate file as ca_file"
        )));
    }
    let Some(token) = optional(data, "token")? else {
        return Err(Error::bad_request(
            "missing \"token\": pass the activation token that the primary's \
             sys/replication/performance/primary/secondary-token returned in wrap_info.token",
        ));
    };
    let token = Secret::new(token);
    let claims = token::parse_unverified(token.expose()).map_err(|error| {
        Error::bad_request(format!(
            "invalid \"token\": {error}; pass the wrap_info.token value of secondary-token"
        ))
    })?;
    let primary_api_addr = match optional(data, "primary_api_addr")? {
        Some(addr) => addr,
        None => claims.addr.clone().ok_or_else(|| {
            Error::bad_request(
                "the activation token names no primary API address; pass primary_api_addr, \
                 for example primary_api_addr=\"https://primary.example.com:8200\"",
            )
        })?,
    };
    check_api_addr(&primary_api_addr)?;
    let ca_sha256 = optional(data, "ca_sha256")?
        .map(|pin| normalise_fingerprint(&pin))
        .transpose()
        .map_err(|error| Error::bad_request(format!("invalid \"ca_sha256\": {error}")))?;
    Ok(EnableRequest {
        token,
        claims,
        primary_api_addr,
        ca_file: optional(data, "ca_file")?,
        ca_sha256,
    })
}

fn optional(
    data: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<String>, Error> {
    Ok(crate::engines::params::string(data, field)?.filter(|text| !text.is_empty()))
}

/// Accepts `https://` addresses, and `http://` only for a loopback host, because the bundle
/// crosses this connection.
fn check_api_addr(addr: &str) -> Result<(), Error> {
    if addr.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = addr.strip_prefix("http://") else {
        return Err(Error::bad_request(format!(
            "invalid primary_api_addr {addr:?}: expected an https:// URL of the primary's API"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "plain HTTP to {addr:?} is not allowed: the activation bundle is unwrapped over this \
         connection, so use https:// (plain http:// is allowed only for a loopback address)"
    )))
}

/// Returns the private key the secondary's certificate certifies: the bundle's key, or the key
/// `secondary/generate-public-key` stored for a public-key activation.
pub fn activation_key(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
    bundle: &BootstrapBundle,
) -> Result<PrivateKey, Error> {
    if let Some(key) = &bundle.secondary_key {
        return Ok(key.clone());
    }
    let view = core.barrier.view(txn, rng)?;
    let key: PrivateKey = view
        .get_json(Partition::Local, state::SECONDARY_KEY_KEY)?
        .ok_or_else(|| {
            Error::bad_request(
                "the bundle carries no private key and this node has no generated key; run \
                 sys/replication/performance/secondary/generate-public-key and issue a new \
                 activation token with its secondary_public_key",
            )
        })?;
    let info = parse_certificate(&bundle.secondary_cert_der)
        .map_err(|error| Error::bad_request(format!("invalid secondary certificate: {error}")))?;
    if info.public_key != key.public_key().as_bytes() {
        return Err(Error::bad_request(
            "the bundle's certificate is for another public key than the one this node \
             generated; issue a new activation token with this node's current \
             secondary_public_key",
        ));
    }
    Ok(key)
}

/// The keys [`adopt`] stored, for [`install`] to put in memory. `Debug` names the type only.
pub struct Adopted {
    root_key: RootKey,
    keyring: Arc<Keyring>,
}

impl fmt::Debug for Adopted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Adopted")
    }
}

/// Makes this node a pending secondary in `txn`. It opens the offer with `key` and wipes
/// every partition. Then it writes the activation record (under the primary's keyring), the
/// primary's `core/keyring` and `core/seal-config`, the local tables a node needs to serve its
/// own tokens, and the position that forces a Merkle sync. Writes nothing when the offer does
/// not open. The caller commits, then calls [`install`] before any [`Core::reload`], because the
/// new activation record only decrypts with the adopted keyring.
pub fn adopt(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
    now: Timestamp,
    bundle: &BootstrapBundle,
    key: &PrivateKey,
    offer: &KeyOffer,
) -> Result<Adopted, Error> {
    core.barrier.keyring()?;

    {
        let view = core.barrier.view(txn, rng)?;
        if state::load_primary(&view)?.is_some() {
            return Err(Error::bad_request(
                "this cluster is a performance replication primary; it cannot become a \
                 secondary",
            ));
        }
    }
    let opened = open_key_offer(offer, key, &bundle.cluster_id, &bundle.secondary_id)?;
    let OpenedKeys {
        root_key,
        keyring,
        keyring_record,
        seal_config_record,
        ..
    } = opened;

    wipe(txn)?;
    apply_ops(
        txn,
        &[
            Op::Put {
                key: crate::barrier::seal::SEAL_CONFIG_KEY.to_owned(),
                value: seal_config_record,
            },
            Op::Put {
                key: crate::barrier::seal::KEYRING_KEY.to_owned(),
                value: keyring_record,
            },
        ],
    )?;

    let keyring = Arc::new(keyring);
    let mut view = SecureView::new(txn, Arc::clone(&keyring), rng);
    save_secondary(
        &mut view,
        &SecondaryRecord {
            bundle: bundle.clone(),
            key: key.clone(),
            activated: false,
            adopted_at: now,
        },
    )?;
    write_local_tables(&mut view)?;

    let unsynced = Position {
        epoch: Epoch::new(bundle.epoch.number, bundle.epoch.cluster_id.clone()),
        index: 0,
        hash: UNSYNCED_HASH,
    };
    Wal::reset(txn, &unsynced)?;
    Ok(Adopted { root_key, keyring })
}

/// Deletes every key of every partition.
fn wipe(txn: &mut dyn Transaction) -> Result<(), Error> {
    for partition in Partition::ALL {
        crate::mounts::purge_prefix(txn, partition, "")?;
    }
    Ok(())
}

/// Writes the local halves of the mount and auth tables as initialisation does: `cubbyhole/`
/// and no local auth method. The shared halves arrive from the primary.
fn write_local_tables(view: &mut SecureView<'_>) -> Result<(), Error> {
    let mut cubbyhole = MountEntry::new(
        TableKind::Secrets,
        "cubbyhole/",
        "cubbyhole",
        true,
        view.rng(),
    );
    cubbyhole.description = "per-token private secret storage".into();
    save_table(view, TableKind::Secrets, true, &[cubbyhole])?;
    save_table(view, TableKind::Auth, true, &[])
}

/// Puts the adopted root key and keyring in memory after the commit of [`adopt`], drops any
/// unseal, root generation or rekey in progress, and reloads the caches from `txn`.
pub fn install(core: &Core, txn: &dyn Transaction, adopted: Adopted) -> Result<(), Error> {
    {
        let mut state = core.barrier.seal_state();
        state.clear();
        state.root_key = Some(adopted.root_key);
        core.barrier.set_keyring(Some(adopted.keyring));
    }
    core.reload(txn, None)
}

/// Records that the first sync after activation finished. Does nothing when already recorded;
/// fails with a 400 when this node is not a secondary.
pub fn mark_activated(
    core: &Core,
    txn: &mut dyn Transaction,
    rng: &mut dyn CryptoRngCore,
) -> Result<(), Error> {
    let mut view = core.barrier.view(txn, rng)?;
    let Some(mut record) = load_secondary(&view)? else {
        return Err(Error::bad_request(
            "this cluster is not a performance replication secondary",
        ));
    };
    if record.activated {
        return Ok(());
    }
    record.activated = true;
    save_secondary(&mut view, &record)
}

/// Installs keys a running secondary received after a rekey on the primary: the new root key,
/// and the newer of the offered keyring and the stored one. Writes nothing, because the
/// barrier records arrive through replication.
pub fn accept_key_offer(
    core: &Core,
    txn: &dyn Transaction,
    bundle: &BootstrapBundle,
    key: &PrivateKey,
    offer: &KeyOffer,
) -> Result<(), Error> {
    let opened = open_key_offer(offer, key, &bundle.cluster_id, &bundle.secondary_id)?;
    let mut keyring = opened.keyring;
    if let Ok(stored) = crate::barrier::seal::load_keyring(txn, &opened.root_key) {
        if stored.active_term() > keyring.active_term() {
            keyring = stored;
        }
    }
    let mut state = core.barrier.seal_state();
    if state.root_key.is_none() {
        return Err(Error::sealed());
    }
    core.barrier.install(&mut state, opened.root_key, keyring);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use serde_json::{Value, json};

    use super::*;
    use crate::barrier::testing::{TestNode, body_of};
    use crate::replication::activation::check_unwrapped_bundle;
    use crate::replication::keys::key_offer;
    use crate::replication::role::{Role, load_role};
    use crate::request::{Operation, Response};
    use crate::storage::{MemStorage, Overlay, Storage};
    use crate::{Core, CoreConfig};

    const ENABLE: &str = "sys/replication/performance/primary/enable";
    const SECONDARY_TOKEN: &str = "sys/replication/performance/primary/secondary-token";
    const API_ADDR: &str = "https://127.0.0.1:8200";

    /// Returns a node after `sys/init` and unseal, with its unseal keys and root token.
    fn initialized(seed: u64, shares: u8, threshold: u8) -> (TestNode, Vec<String>, String) {
        let mut node = TestNode::new();
        node.rng = ChaCha20Rng::seed_from_u64(seed);
        let init = Request::new(Operation::Update, "sys/init").with_data(json!({
            "secret_shares": shares,
            "secret_threshold": threshold,
        }));
        let body = body_of(node.request(init).unwrap());
        let keys: Vec<String> = body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key.as_str().unwrap().to_owned())
            .collect();
        for key in &keys[..usize::from(threshold)] {
            node.unseal(key).unwrap();
        }
        let root = body["root_token"].as_str().unwrap().to_owned();
        (node, keys, root)
    }

    struct Activation {
        primary_keys: Vec<String>,
        bundle: BootstrapBundle,
        key: PrivateKey,
        offer: KeyOffer,
    }

    /// Issues and unwraps a token for `east` on a new primary, and returns its key offer.
    fn primary_offer() -> Activation {
        let (mut primary, primary_keys, _) = initialized(21, 3, 2);
        let enable = Request::new(Operation::Update, ENABLE)
            .with_data(json!({"primary_cluster_addr": "127.0.0.1:8201", "api_addr": API_ADDR}));
        primary.request_as_root(enable).unwrap();
        let issue =
            Request::new(Operation::Update, SECONDARY_TOKEN).with_data(json!({"id": "east"}));
        let Response::Logical(logical) = primary.request_as_root(issue).unwrap() else {
            panic!("secondary-token answers with a logical response");
        };
        let jwt = logical.wrap_info.unwrap().token.expose().to_owned();
        let unwrap = Request::new(Operation::Update, "sys/wrapping/unwrap")
            .with_data(json!({ "token": jwt }));
        let bytes = serde_json::to_vec(&body_of(primary.request(unwrap).unwrap())).unwrap();
        let bundle = check_unwrapped_bundle(&jwt, &bytes, None).unwrap();
        let key = bundle.secondary_key.clone().unwrap();
        let public = *key.public_key().as_bytes();
        let (core, rng) = (&primary.core, &mut primary.rng);
        let offer = primary
            .storage
            .write(|txn| key_offer(core, txn, rng, "east", &public))
            .unwrap();
        Activation {
            primary_keys,
            bundle,
            key,
            offer,
        }
    }

    fn everything(storage: &MemStorage) -> BTreeSet<(Partition, String, Vec<u8>)> {
        Partition::ALL
            .into_iter()
            .flat_map(|partition| {
                storage
                    .dump(partition)
                    .into_iter()
                    .map(move |(key, value)| (partition, key, value))
            })
            .collect()
    }

    fn keys_of(storage: &MemStorage, partition: Partition) -> Vec<String> {
        storage
            .dump(partition)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    fn adopt_on(node: &mut TestNode, activation: &Activation) -> Result<(), Error> {
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        let adopted = node.storage.write(|txn| {
            adopt(
                core,
                txn,
                rng,
                now,
                &activation.bundle,
                &activation.key,
                &activation.offer,
            )
        })?;
        node.storage
            .read(|txn| install(core, txn, adopted))
            .unwrap()
    }

    fn role_of(node: &mut TestNode) -> Role {
        let (core, rng) = (&node.core, &mut node.rng);
        node.storage.write(|txn| load_role(core, txn, rng)).unwrap()
    }

    /// Returns a node with a token, a cubbyhole secret and a raw key in every partition.
    fn secondary_with_data() -> (TestNode, String) {
        let (mut node, _, root) = initialized(31, 1, 1);
        let write = Request::new(Operation::Update, "cubbyhole/note")
            .with_token(root.clone())
            .with_data(json!({"text": "old"}));
        node.request(write).unwrap();
        node.storage
            .write(|txn| {
                for partition in Partition::ALL {
                    txn.put(partition, "old/raw", b"old")?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        (node, root)
    }

    #[test]
    fn adopted_node_keeps_none_of_its_old_data() {
        let activation = primary_offer();
        let (mut node, _) = secondary_with_data();
        let before = everything(&node.storage);
        adopt_on(&mut node, &activation).unwrap();
        let after = everything(&node.storage);
        assert!(
            before.is_disjoint(&after),
            "an old record survived adoption"
        );
        assert_eq!(
            keys_of(&node.storage, Partition::Shared),
            ["core/keyring", "core/seal-config"]
        );
        assert_eq!(
            keys_of(&node.storage, Partition::Local),
            [
                "core/local-auth",
                "core/local-mounts",
                state::SECONDARY_STATE_KEY
            ]
        );
        assert!(keys_of(&node.storage, Partition::Wal).is_empty());
        let head = node.storage.read(|txn| Wal::head(txn)).unwrap().unwrap();
        assert_eq!(head.hash, UNSYNCED_HASH);
        assert_eq!(head.epoch.cluster_id, activation.bundle.cluster_id);
    }

    #[test]
    fn failed_adoption_writes_nothing() {
        let mut activation = primary_offer();
        let (node, _) = secondary_with_data();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        activation.key = PrivateKey::generate(&mut rng);
        node.storage
            .read(|txn| {
                let mut overlay = Overlay::new(txn);
                let result = adopt(
                    &node.core,
                    &mut overlay,
                    &mut rng,
                    node.now,
                    &activation.bundle,
                    &activation.key,
                    &activation.offer,
                );
                assert_eq!(result.unwrap_err().status(), 400);
                assert!(overlay.writes().is_empty());
            })
            .unwrap();
    }

    #[test]
    fn restart_after_adoption_unseals_with_primary_keys() {
        let activation = primary_offer();
        let (mut node, _) = secondary_with_data();
        adopt_on(&mut node, &activation).unwrap();
        let mut restarted = TestNode::new();
        restarted.storage = node.storage.clone();
        restarted.core = Core::new(CoreConfig::default());
        for key in &activation.primary_keys[..2] {
            restarted.unseal(key).unwrap();
        }
        assert!(!restarted.core.barrier.is_sealed());
        let Role::Secondary(credentials) = role_of(&mut restarted) else {
            panic!("an adopted node is a secondary");
        };
        assert!(!credentials.activated);
        assert_eq!(credentials.bundle.secondary_id, "east");
        assert_eq!(credentials.key, activation.key);
        let (core, rng) = (&restarted.core, &mut restarted.rng);
        restarted
            .storage
            .write(|txn| mark_activated(core, txn, rng))
            .unwrap();
        let Role::Secondary(credentials) = role_of(&mut restarted) else {
            panic!("an activated node is a secondary");
        };
        assert!(credentials.activated);
    }

    #[test]
    fn adopted_node_issues_its_own_tokens() {
        let activation = primary_offer();
        let (mut node, old_root) = secondary_with_data();
        adopt_on(&mut node, &activation).unwrap();
        let old = Request::new(Operation::Read, "cubbyhole/note").with_token(old_root);
        assert_eq!(node.request(old).unwrap_err().status(), 403);
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        let root = node
            .storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, rng)?;
                crate::token::create_root_token(core, &mut view, now)
            })
            .unwrap();
        let create = Request::new(Operation::Update, "auth/token/create")
            .with_token(root.expose())
            .with_data(json!({"policies": ["root"]}));
        let Response::Logical(created) = node.request(create).unwrap() else {
            panic!("token creation answers with a logical response");
        };
        let token = created.auth.unwrap().client_token.expose().to_owned();
        let write = Request::new(Operation::Update, "cubbyhole/note")
            .with_token(token.clone())
            .with_data(json!({"text": "new"}));
        node.request(write).unwrap();
        let read = Request::new(Operation::Read, "cubbyhole/note").with_token(token);
        let body = body_of(node.request(read).unwrap());
        assert_eq!(body["text"], Value::from("new"));
    }

    #[test]
    fn primary_cannot_adopt_keys() {
        let activation = primary_offer();
        let (mut node, _, _) = initialized(41, 1, 1);
        let enable = Request::new(Operation::Update, ENABLE).with_data(json!({}));
        node.request_as_root(enable).unwrap();
        let error = adopt_on(&mut node, &activation).unwrap_err();
        assert_eq!(error.status(), 400);
    }

    fn enable_request(data: Value) -> Request {
        Request::new(
            Operation::Update,
            "sys/replication/performance/secondary/enable",
        )
        .with_data(data)
    }

    fn message(error: &Error) -> String {
        match error {
            Error::Api { messages, .. } => messages.join("; "),
            other => other.to_string(),
        }
    }

    #[test]
    fn enable_without_token_names_the_field() {
        let error = parse_enable(&enable_request(json!({}))).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(message(&error).contains("missing \"token\""));
    }

    #[test]
    fn enable_with_garbage_token_is_rejected() {
        let error = parse_enable(&enable_request(json!({"token": "abc"}))).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(message(&error).starts_with("invalid \"token\""));
    }

    #[test]
    fn enable_checks_address_and_pin() {
        let (mut primary, _, _) = initialized(51, 1, 1);
        let enable =
            Request::new(Operation::Update, ENABLE).with_data(json!({"api_addr": API_ADDR}));
        primary.request_as_root(enable).unwrap();
        let issue =
            Request::new(Operation::Update, SECONDARY_TOKEN).with_data(json!({"id": "west"}));
        let Response::Logical(logical) = primary.request_as_root(issue).unwrap() else {
            panic!("secondary-token answers with a logical response");
        };
        let jwt = logical.wrap_info.unwrap().token.expose().to_owned();

        let parsed = parse_enable(&enable_request(json!({"token": jwt}))).unwrap();
        assert_eq!(parsed.primary_api_addr, API_ADDR);
        assert_eq!(parsed.claims.id, "west");
        assert!(!format!("{parsed:?}").contains(&jwt));

        let plain = json!({"token": jwt, "primary_api_addr": "http://10.0.0.1:8200"});
        let error = parse_enable(&enable_request(plain)).unwrap_err();
        assert!(message(&error).contains("is not allowed"));

        let loopback = json!({"token": jwt, "primary_api_addr": "http://127.0.0.1:8200"});
        assert!(parse_enable(&enable_request(loopback)).is_ok());

        let pin = json!({"token": jwt, "ca_sha256": "1234"});
        let error = parse_enable(&enable_request(pin)).unwrap_err();
        assert!(message(&error).starts_with("invalid \"ca_sha256\""));

        let ca_path = json!({"token": jwt, "ca_path": "/etc/ca"});
        let error = parse_enable(&enable_request(ca_path)).unwrap_err();
        assert!(message(&error).contains("ca_path is not supported"));
    }

    /// Returns an adopted secondary and a root token of its own.
    fn adopted_secondary() -> (TestNode, String) {
        let activation = primary_offer();
        let (mut node, _) = secondary_with_data();
        adopt_on(&mut node, &activation).unwrap();
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        let root = node
            .storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, rng)?;
                crate::token::create_root_token(core, &mut view, now)
            })
            .unwrap();
        (node, root.expose().to_owned())
    }

    #[test]
    fn secondary_forwards_shared_writes() {
        let (mut node, root) = adopted_secondary();
        let writes = [
            (
                "sys/policy/ops",
                json!({"policy": "path \"x\" { capabilities = [\"read\"] }"}),
            ),
            ("sys/mounts/kv", json!({"type": "kv"})),
            ("sys/rotate", json!({})),
        ];
        for (path, body) in writes {
            let request = Request::new(Operation::Update, path)
                .with_token(root.clone())
                .with_data(body);
            let error = node.request(request).unwrap_err();
            assert!(node.core.is_forward(&error), "{path}: {error}");
        }
    }

    #[test]
    fn secondary_serves_local_mounts_and_reads() {
        let (mut node, root) = adopted_secondary();
        let mount = Request::new(Operation::Update, "sys/mounts/here")
            .with_token(root.clone())
            .with_data(json!({"type": "kv", "local": true}));
        node.request(mount).unwrap();
        let write = Request::new(Operation::Update, "here/app")
            .with_token(root.clone())
            .with_data(json!({"password": "local"}));
        node.request(write).unwrap();
        let read = Request::new(Operation::Read, "here/app").with_token(root.clone());
        let body = body_of(node.request(read).unwrap());
        assert_eq!(body["password"], Value::from("local"));
        let mounts = Request::new(Operation::Read, "sys/mounts").with_token(root);
        assert!(node.request(mounts).is_ok());
    }

    #[test]
    fn secondary_refuses_primary_duties() {
        let (mut node, _) = adopted_secondary();
        let enable = Request::new(Operation::Update, ENABLE).with_data(json!({}));
        let error = node.request_as_root(enable).unwrap_err();
        assert!(message(&error).contains("is a performance replication secondary"));
        let issue = Request::new(Operation::Update, SECONDARY_TOKEN).with_data(json!({"id": "x"}));
        let error = node.request_as_root(issue).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(message(&error).contains("on its primary"));
    }

    #[test]
    fn secondary_enable_in_core_fails_clearly() {
        let (mut node, _, _) = initialized(61, 1, 1);
        let request = enable_request(json!({"token": "x"}));
        let error = node.request_as_root(request).unwrap_err();
        assert_eq!(error.status(), 500);
        assert!(message(&error).contains("cannot contact the primary"));
    }

    fn performance_status(node: &mut TestNode) -> Value {
        let request = Request::new(Operation::Read, "sys/replication/performance/status");
        body_of(node.request(request).unwrap())
    }

    #[test]
    fn secondary_status_reports_bundle_and_live_state() {
        use crate::replication::live::{ConnectionState, SyncCounts};
        use crate::replication::secondary::SecondaryState;

        let (mut node, _) = adopted_secondary();
        let status = performance_status(&mut node);
        assert_eq!(status["mode"], json!("secondary"));
        assert_eq!(status["state"], json!("idle"));
        assert_eq!(status["connection_state"], json!("idle"));
        assert_eq!(status["secondary_id"], json!("east"));
        assert_eq!(status["primary_cluster_addr"], json!("127.0.0.1:8201"));
        assert_eq!(
            status["known_primary_cluster_addrs"],
            json!(["127.0.0.1:8201"])
        );
        assert_eq!(status["last_remote_wal"], json!(0));
        assert_eq!(status["primaries"][0]["api_address"], json!(API_ADDR));
        assert_eq!(
            status["primaries"][0]["connection_status"],
            json!("disconnected")
        );
        assert_eq!(status.get("merkle_sync_progress"), None);
        assert_eq!(status["bytes_received"], json!(0));

        node.core
            .replication_live
            .set_secondary_state(SecondaryState::Connecting);
        let status = performance_status(&mut node);
        assert_eq!(status["state"], json!("bootstrapping"));

        let live = &node.core.replication_live;
        live.set_secondary_state(SecondaryState::MerkleSync);
        live.set_connection_state(ConnectionState::Ready);
        live.set_last_heartbeat(node.now);
        live.set_merkle_sync_progress(Some(SyncCounts {
            total_keys: 9,
            done: 2,
        }));
        let status = performance_status(&mut node);
        assert_eq!(status["state"], json!("merkle-sync"));
        assert_eq!(status["connection_state"], json!("ready"));
        assert_eq!(status["merkle_sync_progress"]["sync_total_keys"], json!(9));
        assert_eq!(status["merkle_sync_progress"]["sync_progress"], json!(2));

        node.core.replication_live.set_traffic(70_000, 1_200);
        let status = performance_status(&mut node);
        assert_eq!(status["bytes_received"], json!(70_000));
        assert_eq!(status["bytes_sent"], json!(1_200));
        let primary = &status["primaries"][0];
        assert_eq!(primary["connection_status"], json!("connected"));
        assert_eq!(
            primary["last_heartbeat"],
            json!(node.now.to_rfc3339_seconds())
        );
        assert_eq!(primary["clock_skew_ms"], json!("0"));
    }

    #[test]
    fn primary_status_lists_live_sessions() {
        let (mut node, _, _) = initialized(71, 1, 1);
        let enable = Request::new(Operation::Update, ENABLE).with_data(json!({}));
        node.request_as_root(enable).unwrap();
        assert_eq!(performance_status(&mut node)["secondaries"], json!([]));
        let now = node.now;
        node.core.replication_live.update_session("east", |peer| {
            peer.connected = true;
            peer.cluster_address = "127.0.0.1:40000".into();
            peer.last_heartbeat = Some(now);
        });
        let status = performance_status(&mut node);
        let secondary = &status["secondaries"][0];
        assert_eq!(secondary["node_id"], json!("east"));
        assert_eq!(secondary["connection_status"], json!("connected"));
        assert_eq!(secondary["cluster_address"], json!("127.0.0.1:40000"));
        assert_eq!(secondary["last_heartbeat_duration_ms"], json!("0"));
    }

    #[test]
    fn health_reports_the_replication_mode() {
        let health = |node: &mut TestNode| {
            let request = Request::new(Operation::Read, "sys/health");
            body_of(node.request(request).unwrap())["replication_performance_mode"].clone()
        };
        let (mut secondary, _) = adopted_secondary();
        assert_eq!(health(&mut secondary), json!("secondary"));
        let (mut primary, _, _) = initialized(81, 1, 1);
        assert_eq!(health(&mut primary), json!("disabled"));
        let enable = Request::new(Operation::Update, ENABLE).with_data(json!({}));
        primary.request_as_root(enable).unwrap();
        assert_eq!(health(&mut primary), json!("primary"));
        assert_eq!(
            body_of(
                primary
                    .request(Request::new(Operation::Read, "sys/health"))
                    .unwrap()
            )["replication_dr_mode"],
            json!("disabled")
        );
    }

    #[test]
    fn accepted_offer_replaces_the_root_key() {
        let activation = primary_offer();
        let (mut node, _) = secondary_with_data();
        adopt_on(&mut node, &activation).unwrap();
        let new_root = RootKey::new([9; 32]);
        let keyring = node.core.barrier.keyring().unwrap();
        let scratch = MemStorage::new();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        scratch
            .write(|txn| crate::barrier::seal::store_keyring(txn, &new_root, &keyring, &mut rng))
            .unwrap();
        let record = scratch
            .dump(Partition::Shared)
            .into_iter()
            .find(|(key, _)| key == crate::barrier::seal::KEYRING_KEY)
            .unwrap()
            .1;
        let public = *activation.key.public_key().as_bytes();
        let seal_config = activation.offer.seal_config.clone();
        let mut offer = crate::replication::keys::seal_root_key(
            &new_root,
            &public,
            &activation.bundle.cluster_id,
            "east",
            &seal_config,
            &mut rng,
        )
        .unwrap();
        offer.keyring = record;
        offer.seal_config = seal_config;
        let core = &node.core;
        node.storage
            .read(|txn| accept_key_offer(core, txn, &activation.bundle, &activation.key, &offer))
            .unwrap()
            .unwrap();
        let state = node.core.barrier.seal_state();
        assert_eq!(state.root_key.as_deref(), Some(&*new_root));
    }
}
