//! Secondary activation on this node: the steps of `secondary/enable` that need the network.
//!
//! The core cannot talk to the primary, so the node runs `secondary/enable` here, in four
//! steps; only the last one writes, so a failure in the first three leaves the node as it was:
//!
//! 1. unwrap the activation token at the primary's API, which returns the bootstrap bundle
//!    once ([`unwrap`]);
//! 2. check the bundle against the token's claims and the operator's `ca_sha256`;
//! 3. open one mutually authenticated connection to the primary's cluster port with the
//!    bundle, and receive the key material sealed to this secondary's key ([`probe`]);
//! 4. in one transaction, record the pending activation, wipe this node's data and adopt the
//!    primary's seal; then put the new keys in memory.
//!
//! Replication then starts from the stored activation, as it does after a restart.

mod failover;
pub mod probe;
pub mod unwrap;

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Weak;

use coffer_core::error::Error;
use coffer_core::replication::activation::{BootstrapBundle, PrivateKey, check_unwrapped_bundle};
use coffer_core::replication::keys::KeyOffer;
use coffer_core::replication::{activate, role};
use coffer_core::request::{Logical, Operation, Request, Response};
use coffer_core::storage::{ReadOnly, Storage};
use coffer_core::{Ctx, acl};

use self::unwrap::{PrimaryApi, unwrap_bundle};
use super::environment::Environment;
use super::net::Network;
use super::node::{Intercepted, Interceptor, Node};

/// The paths of `secondary/enable`, current and 0.7-era.
const ENABLE_PATHS: [&str; 2] = [
    "sys/replication/performance/secondary/enable",
    "sys/replication/secondary/enable",
];

const ACTIVATED_WARNING: &str = "This cluster is being enabled as a performance replication \
     secondary. Its previous data was removed; it now bootstraps from the primary. Unseal it \
     with the primary's unseal keys after a restart, and generate a root token on it with \
     sys/generate-root and the primary's unseal keys.";

/// The paths of `primary/enable`, current and 0.7-era.
const PRIMARY_ENABLE_PATHS: [&str; 2] = [
    "sys/replication/performance/primary/enable",
    "sys/replication/primary/enable",
];

/// This node's own addresses from its configuration, which the core cannot know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    /// `api_addr`: where secondaries unwrap their activation tokens.
    pub api_addr: Option<String>,
    /// `cluster_addr`: where secondaries dial the cluster port.
    pub cluster_addr: Option<String>,
}

/// Runs `secondary/enable` for one node over `network`, and gives `primary/enable` the
/// node's configured addresses.
pub struct Activator<S, E, N> {
    node: Weak<Node<S, E>>,
    network: N,
    addresses: NodeAddresses,
    in_progress: tokio::sync::Mutex<()>,
}

impl<S, E, N> Activator<S, E, N>
where
    S: Storage + 'static,
    E: Environment,
    N: Network,
{
    /// Creates an activator for `node`. It keeps a weak reference, because the node owns it.
    pub fn new(node: Weak<Node<S, E>>, network: N, addresses: NodeAddresses) -> Activator<S, E, N> {
        Activator {
            node,
            network,
            addresses,
            in_progress: tokio::sync::Mutex::new(()),
        }
    }

    /// Runs `primary/enable` or `secondary/promote` in the core with the configured `api_addr`
    /// and `cluster_addr` added to the body, unless the body gives its own.
    async fn enable_primary(&self, request: &Request) -> Result<Response, Error> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| Error::internal("the node is shutting down"))?;
        let mut request = request.clone();
        let configured = [
            ("api_addr", &self.addresses.api_addr),
            ("cluster_addr", &self.addresses.cluster_addr),
        ];
        for (field, value) in configured {
            if let Some(value) = value {
                if !request.data.contains_key(field) {
                    request
                        .data
                        .insert(field.to_owned(), serde_json::Value::String(value.clone()));
                }
            }
        }
        node.execute_in_core(request).await
    }

    async fn enable(&self, request: &Request) -> Result<Response, Error> {
        let node = self
            .node
            .upgrade()
            .ok_or_else(|| Error::internal("the node is shutting down"))?;
        // One activation at a time: a second one would wipe what the first adopted.
        let Ok(_running) = self.in_progress.try_lock() else {
            return Err(Error::bad_request(
                "another secondary/enable is in progress on this node; wait for it to finish and try again",
            ));
        };
        authorize(&node, request)?;
        let enable = activate::parse_enable(request)?;
        refuse_before_unwrap(&node, &enable)?;
        let (bundle, key, offer) = self
            .prove_primary(&node, &enable, "secondary activation")
            .await?;

        let core = node.core();
        let now = node.environment().now();
        let mut rng = node.rng();
        let adopted = node
            .storage()
            .write(|txn| activate::adopt(core, txn, &mut rng, now, &bundle, &key, &offer))?;
        node.storage()
            .read(|txn| activate::install(core, txn, adopted))??;
        tracing::info!(
            cluster_id = %bundle.cluster_id,
            secondary_id = %bundle.secondary_id,
            "activated as a performance secondary; bootstrapping from the primary"
        );
        Ok(Response::logical(Logical {
            status: 200,
            warnings: vec![ACTIVATED_WARNING.to_owned()],
            ..Logical::default()
        }))
    }

    /// Runs the three steps that change nothing: unwraps the token at the primary's API,
    /// checks the bundle, and proves the primary's cluster port, which returns the key offer.
    /// A failure names `operation` and its step.
    async fn prove_primary(
        &self,
        node: &Node<S, E>,
        request: &activate::EnableRequest,
        operation: &str,
    ) -> Result<(BootstrapBundle, PrivateKey, KeyOffer), Error> {
        let primary = PrimaryApi::parse(&request.primary_api_addr)
            .map_err(|error| failed(operation, 1, "reading the primary's address", error))?;
        let ca_pem = if primary.uses_tls() {
            read_ca_file(request.ca_file.as_deref())?
        } else {
            None
        };
        let crypto = node.environment().tls_crypto();
        let token = &request.token;
        let bundle_bytes =
            unwrap_bundle(&self.network, &primary, token, ca_pem.as_deref(), &crypto)
                .await
                .map_err(|error| {
                    let what = "unwrapping the activation token at the primary";
                    failed(operation, 1, what, error)
                })?;
        let bundle = check_unwrapped_bundle(
            request.token.expose(),
            &bundle_bytes,
            request.ca_sha256.as_deref(),
        )
        .map_err(|error| failed(operation, 2, "checking the bootstrap bundle", error))?;
        let key = {
            let core = node.core();
            let mut rng = node.rng();
            node.storage().read(|txn| {
                activate::activation_key(core, &mut ReadOnly(txn), &mut rng, &bundle)
            })??
        };
        let offer = probe::fetch_key_offer(&self.network, &bundle, &key, &crypto)
            .await
            .map_err(|error| {
                let what = "connecting to the primary's cluster port";
                failed(operation, 3, what, error)
            })?;
        Ok((bundle, key, offer))
    }
}

impl<S, E, N> Interceptor for Activator<S, E, N>
where
    S: Storage + 'static,
    E: Environment,
    N: Network,
{
    fn intercept<'a>(&'a self, request: &'a Request) -> Option<Intercepted<'a>> {
        if request.operation != Operation::Update {
            return None;
        }
        let path = request.path.as_str();
        if ENABLE_PATHS.contains(&path) {
            return Some(Box::pin(self.enable(request)));
        }
        if PRIMARY_ENABLE_PATHS.contains(&path) {
            return Some(Box::pin(self.enable_primary(request)));
        }
        if failover::UPDATE_PRIMARY_PATHS.contains(&path) {
            return Some(Box::pin(self.update_primary(request)));
        }
        if failover::PROMOTE_PATHS.contains(&path) {
            return Some(Box::pin(self.promote(request)));
        }
        None
    }
}

/// Checks the token and the policy (`secondary/enable` needs `sudo`) on a read snapshot.
fn authorize<S: Storage + 'static, E: Environment>(
    node: &Node<S, E>,
    request: &Request,
) -> Result<(), Error> {
    let core = node.core();
    let mut rng = node.rng();
    let mut ctx = Ctx::new(node.environment().now(), &mut rng);
    node.storage().read(|txn| {
        let mut snapshot = ReadOnly(txn);
        let caller = core
            .authenticate(&mut ctx, request, &mut snapshot)
            .map_err(|error| match error {
                Error::Storage(_) => Error::bad_request(
                    "secondary/enable needs a token without a use limit; create one with \
                     num_uses=0 and try again",
                ),
                other => other,
            })?
            .ok_or_else(Error::permission_denied)?;
        acl::authorize(core, &caller, request, &mut snapshot)
    })?
}

/// The largest `ca_file` read: a PEM bundle of a few hundred CA certificates.
const MAX_CA_FILE_SIZE: u64 = 1 << 20;

/// Reads the operator's `ca_file`: a regular file of at most [`MAX_CA_FILE_SIZE`] bytes.
///
/// The read runs on the request's task rather than through `tokio::fs`, whose blocking thread
/// finishes at a moment set by the wall clock, so a simulated node would resume at another
/// simulated tick from run to run. Opening with `O_NONBLOCK` and checking the open handle keeps
/// a FIFO or a device at `path` from blocking the worker.
fn read_ca_file(path: Option<&str>) -> Result<Option<Vec<u8>>, Error> {
    let Some(path) = path else {
        return Ok(None);
    };
    let unreadable = |reason: String| {
        Error::bad_request(format!(
            "cannot read ca_file {path}: {reason}; give the path of a PEM file on this server"
        ))
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(Path::new(path))
        .map_err(|error| unreadable(error.to_string()))?;
    let metadata = file
        .metadata()
        .map_err(|error| unreadable(error.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("it is not a regular file".to_owned()));
    }
    let too_large = |size: u64| {
        unreadable(format!(
            "it has {size} bytes, more than the {MAX_CA_FILE_SIZE} a CA bundle may have"
        ))
    };
    if metadata.len() > MAX_CA_FILE_SIZE {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::new();
    // One byte past the maximum shows a file that grew after the size check.
    file.take(MAX_CA_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| unreadable(error.to_string()))?;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_CA_FILE_SIZE {
        return Err(too_large(size));
    }
    Ok(Some(bytes))
}

/// Refuses what can be refused before the token is spent at the primary: a node that is a
/// primary itself, and an operator pin that the token's own CA fingerprint contradicts.
fn refuse_before_unwrap<S: Storage + 'static, E: Environment>(
    node: &Node<S, E>,
    enable: &activate::EnableRequest,
) -> Result<(), Error> {
    let core = node.core();
    let mut rng = node.rng();
    let role = node
        .storage()
        .read(|txn| role::load_role(core, &mut ReadOnly(txn), &mut rng))??;
    if matches!(role, role::Role::Primary(_)) {
        return Err(Error::bad_request(
            "this cluster is a performance replication primary; it cannot become a secondary, \
             and the activation token was not used",
        ));
    }
    if let Some(pin) = &enable.ca_sha256 {
        if *pin != enable.claims.ca_sha256 {
            return Err(Error::bad_request(format!(
                "ca_sha256 {pin} does not match the replication CA the activation token names \
                 ({}); the token was not used, so check which primary issued it",
                enable.claims.ca_sha256
            )));
        }
    }
    Ok(())
}

/// Builds the 400 for a failed step of `operation`, whose message states that nothing changed.
fn failed(operation: &str, step: u8, what: &str, error: impl std::fmt::Display) -> Error {
    Error::bad_request(format!(
        "{operation} failed at step {step} of 4 ({what}): {error}; this cluster was not \
         changed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(path: &str) -> String {
        read_ca_file(Some(path))
            .expect_err("the ca_file should be rejected")
            .to_string()
    }

    #[test]
    fn ca_file_is_read() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ca.pem");
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let bytes = read_ca_file(path.to_str()).unwrap();
        assert_eq!(
            bytes.as_deref(),
            Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
        );
        assert_eq!(read_ca_file(None).unwrap(), None);
    }

    #[test]
    fn ca_file_device_is_rejected() {
        let message = rejection("/dev/null");
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn ca_file_directory_is_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let message = rejection(directory.path().to_str().unwrap());
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn ca_file_over_maximum_is_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("large.pem");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_CA_FILE_SIZE + 1).unwrap();
        let message = rejection(path.to_str().unwrap());
        assert!(message.contains("more than the 1048576"), "{message}");
    }

    #[test]
    fn ca_file_missing_is_rejected() {
        let message = rejection("/nonexistent/ca.pem");
        assert!(
            message.contains("cannot read ca_file /nonexistent/ca.pem"),
            "{message}"
        );
    }
}
