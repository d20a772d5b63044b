//! A test harness: an unsealed core over `MemStorage` that runs each request read-only first
//! and again on the writer when it tries to write, as the io layer does.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value};

use crate::barrier::Keyring;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Logical, Operation, Request, Response};
use crate::storage::{MemStorage, ReadOnly, Storage, StorageError, Transaction};
use crate::time::Timestamp;
use crate::{Core, CoreConfig};

/// An unsealed, initialised core and its storage.
pub(crate) struct Harness {
    pub(crate) core: Core,
    pub(crate) storage: MemStorage,
    pub(crate) now: Timestamp,
    rng: ChaCha20Rng,
}

impl Harness {
    /// Builds a core with a fresh keyring and the built-in mount tables.
    pub(crate) fn new() -> Harness {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let now = Timestamp::from_secs(1_700_000_000);
        let core = Core::new(CoreConfig::default());
        let keyring = Keyring::generate(&mut rng, now);
        core.barrier.set_keyring(Some(Arc::new(keyring)));
        let storage = MemStorage::new();
        storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, &mut rng)?;
                crate::mounts::initialize(&core, &mut view, now)
            })
            .unwrap();
        Harness {
            core,
            storage,
            now,
            rng,
        }
    }

    /// Returns a root caller whose cubbyhole is `token_hash`.
    pub(crate) fn caller(token_hash: &str) -> Caller {
        Caller {
            policies: vec!["root".into()],
            token_hash: token_hash.into(),
            ..Default::default()
        }
    }

    /// Runs a request as the root caller `t1`.
    pub(crate) fn run(
        &mut self,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> Result<Response, Error> {
        self.run_as(&Harness::caller("t1"), operation, path, body)
    }

    /// Runs a request as `caller`: read-only first, then on the writer if it must write.
    pub(crate) fn run_as(
        &mut self,
        caller: &Caller,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> Result<Response, Error> {
        let request = Request::new(operation, path).with_data(body);
        let (core, rng, now) = (&self.core, &mut self.rng, self.now);
        let first = self
            .storage
            .read(|txn| {
                let mut read_only = ReadOnly(txn);
                dispatch(core, rng, now, &request, caller, &mut read_only)
            })
            .unwrap();
        match first {
            Err(Error::Storage(StorageError::ReadOnly { .. })) => self
                .storage
                .write(|txn| dispatch(core, rng, now, &request, caller, txn)),
            other => other,
        }
    }

    /// Runs a request that must succeed with an envelope and returns it.
    pub(crate) fn logical(&mut self, operation: Operation, path: &str, body: Value) -> Logical {
        match self.run(operation, path, body) {
            Ok(Response::Logical(logical)) => *logical,
            other => panic!("{operation:?} {path}: expected an envelope, got {other:?}"),
        }
    }

    /// Runs a request that must succeed with an envelope and returns its `data`.
    pub(crate) fn data(
        &mut self,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> Map<String, Value> {
        let logical = self.logical(operation, path, body);
        assert_eq!(logical.status, 200, "{operation:?} {path}: {logical:?}");
        logical.data.unwrap_or_default()
    }

    /// Runs a request that must return 204.
    pub(crate) fn ok(&mut self, operation: Operation, path: &str, body: Value) {
        let response = self.run(operation, path, body);
        assert_eq!(response, Ok(Response::NoContent), "{operation:?} {path}");
    }

    /// Runs a request that must fail, and returns the status and messages.
    pub(crate) fn fail(
        &mut self,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> (u16, Vec<String>) {
        match self.run(operation, path, body) {
            Err(Error::Api { status, messages }) => (status, messages),
            other => panic!("{operation:?} {path}: expected an error, got {other:?}"),
        }
    }
}

fn dispatch(
    core: &Core,
    rng: &mut ChaCha20Rng,
    now: Timestamp,
    request: &Request,
    caller: &Caller,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut ctx = Ctx::new(now, rng);
    if request.path.starts_with("sys/") {
        crate::sys::handle(core, &mut ctx, request, Some(caller), txn)
    } else {
        crate::engines::handle(core, &mut ctx, request, Some(caller), txn)
    }
}
