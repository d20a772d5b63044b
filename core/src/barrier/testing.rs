//! A test node: a [`Core`] over [`MemStorage`] with a seeded RNG, and helpers that drive
//! requests the way the server does.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

use super::init::{split_root_key, write_barrier_records};
use super::seal::SealConfig;
use crate::error::Error;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::{MemStorage, ReadOnly, Storage, Transaction};
use crate::time::Timestamp;
use crate::{Core, CoreConfig, Ctx, Outcome};

/// A core, its storage, a seeded RNG and a clock that tests move by hand.
pub(crate) struct TestNode {
    pub(crate) core: Core,
    pub(crate) storage: MemStorage,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) now: Timestamp,
}

impl TestNode {
    /// A sealed, uninitialised node.
    pub(crate) fn new() -> TestNode {
        TestNode {
            core: Core::new(CoreConfig::default()),
            storage: MemStorage::new(),
            rng: ChaCha20Rng::seed_from_u64(7),
            now: Timestamp::from_secs(1_700_000_000),
        }
    }

    /// Runs `request` through [`Core::handle_request`]: first on a read-only snapshot, then,
    /// when it needs to write, again in a write transaction.
    pub(crate) fn request(&mut self, request: Request) -> Result<Response, Error> {
        let result = self.run(|core, ctx, txn| core.handle_request(ctx, &request, txn));
        self.core.barrier.validate().expect("seal invariants hold");
        result
    }

    /// Runs `request` as a root caller, skipping token authentication.
    pub(crate) fn request_as_root(&mut self, request: Request) -> Result<Response, Error> {
        let caller = root_caller();
        let result = self
            .run(|core, ctx, txn| Outcome::from(core.dispatch(ctx, &request, Some(&caller), txn)));
        self.core.barrier.validate().expect("seal invariants hold");
        result
    }

    /// Writes the barrier records as `sys/init` does, without the token store, and returns the
    /// key shares in hex.
    pub(crate) fn init_without_token(&mut self, shares: u8, threshold: u8) -> Vec<String> {
        let config = SealConfig {
            secret_shares: shares,
            secret_threshold: threshold,
        };
        let mut ctx = Ctx::new(self.now, &mut self.rng);
        let (root_key, _) = self
            .storage
            .write(|txn| write_barrier_records(&mut ctx, txn, &config))
            .expect("writing to MemStorage succeeds");
        let shares = split_root_key(&root_key, &config, &mut ctx).expect("settings are valid");
        shares
            .iter()
            .map(|share| share.to_hex().as_str().to_owned())
            .collect()
    }

    /// Initialises without a token and unseals with the first `threshold` shares.
    pub(crate) fn init_and_unseal(&mut self, shares: u8, threshold: u8) -> Vec<String> {
        let keys = self.init_without_token(shares, threshold);
        for key in &keys[..usize::from(threshold)] {
            self.unseal(key).expect("a valid share is accepted");
        }
        assert!(!self.core.barrier.is_sealed(), "threshold shares unseal");
        keys
    }

    /// Submits one unseal key and returns the status body.
    pub(crate) fn unseal(&mut self, key: &str) -> Result<Value, Error> {
        let request = Request::new(Operation::Update, "sys/unseal").with_data(json!({"key": key}));
        self.request(request).map(body_of)
    }

    fn run(
        &mut self,
        mut handle: impl FnMut(&Core, &mut Ctx<'_>, &mut dyn Transaction) -> Outcome,
    ) -> Result<Response, Error> {
        let core = &self.core;
        let rng = &mut self.rng;
        let now = self.now;
        let first = self
            .storage
            .read(|txn| handle(core, &mut Ctx::new(now, rng), &mut ReadOnly(txn)))?;
        match first {
            Outcome::Response(response) => Ok(response),
            Outcome::Error(error) => Err(error),
            Outcome::Forward(_) => Err(forward_error()),
            Outcome::ReadOnly(_) => {
                self.storage
                    .write(|txn| match handle(core, &mut Ctx::new(now, rng), txn) {
                        Outcome::Response(response) => Ok(response),
                        Outcome::Error(error) => Err(error),
                        Outcome::ReadOnly(partition) => {
                            Err(crate::storage::StorageError::ReadOnly { partition }.into())
                        }
                        Outcome::Forward(_) => Err(forward_error()),
                    })
            }
        }
    }
}

/// The error a secondary's write to replicated data ends with before it is forwarded.
fn forward_error() -> Error {
    crate::storage::StorageError::ReadOnly {
        partition: crate::storage::Partition::Shared,
    }
    .into()
}

/// A caller with the `root` policy.
pub(crate) fn root_caller() -> Caller {
    Caller {
        policies: vec!["root".into()],
        ..Caller::default()
    }
}

/// The JSON body of a raw or envelope response; `null` for 204.
pub(crate) fn body_of(response: Response) -> Value {
    match response {
        Response::Raw { body, .. } => body,
        Response::Logical(logical) => logical.data.map(Value::Object).unwrap_or(Value::Null),
        Response::NoContent => Value::Null,
    }
}

/// The HTTP status of a response.
pub(crate) fn status_of(response: &Response) -> u16 {
    match response {
        Response::Raw { status, .. } => *status,
        Response::Logical(logical) => logical.status,
        Response::NoContent => 204,
    }
}
