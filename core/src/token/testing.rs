//! A test node over `MemStorage`: unsealed, with the default policy and a root token.

use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value};

use crate::barrier::Keyring;
use crate::error::Error;
use crate::request::{Auth, Logical, Operation, Request, Response};
use crate::storage::{MemStorage, ReadOnly, Storage, StorageError};
use crate::{Core, CoreConfig, Ctx, Outcome, Timestamp};

/// A core, its storage, a seeded RNG, a settable clock and the root token.
pub(crate) struct Node {
    pub(crate) core: Core,
    pub(crate) storage: MemStorage,
    pub(crate) rng: ChaCha20Rng,
    pub(crate) now: Timestamp,
    pub(crate) root: String,
}

impl Node {
    pub(crate) fn new() -> Node {
        let core = Core::new(CoreConfig::default());
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let now = Timestamp::from_secs(1_700_000_000);
        core.barrier
            .set_keyring(Some(Arc::new(Keyring::generate(&mut rng, now))));
        let storage = MemStorage::new();
        let root = storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, &mut rng)?;
                crate::acl::initialize(&core, &mut view)?;
                crate::token::create_root_token(&core, &mut view, now)
            })
            .unwrap();
        Node {
            core,
            storage,
            rng,
            now,
            root: root.expose().to_owned(),
        }
    }

    pub(crate) fn advance(&mut self, duration: Duration) {
        self.now = self.now.saturating_add(duration);
    }

    /// Runs a request read-only first, and again on the writer when it needs to write.
    pub(crate) fn run(&mut self, request: &Request) -> Outcome {
        let (core, rng, now) = (&self.core, &mut self.rng, self.now);
        let outcome = self
            .storage
            .read(|txn| {
                let mut read_only = ReadOnly(txn);
                core.handle_request(&mut Ctx::new(now, &mut *rng), request, &mut read_only)
            })
            .unwrap();
        let Outcome::ReadOnly(_) = outcome else {
            return outcome;
        };
        self.storage
            .write(|txn| {
                let outcome = core.handle_request(&mut Ctx::new(now, &mut *rng), request, txn);
                Ok::<_, StorageError>(outcome)
            })
            .unwrap()
    }

    pub(crate) fn ok(&mut self, request: Request) -> Response {
        match self.run(&request) {
            Outcome::Response(response) => response,
            other => panic!("{} {:?} failed: {other:?}", request.path, request.operation),
        }
    }

    pub(crate) fn fail(&mut self, request: Request) -> Error {
        match self.run(&request) {
            Outcome::Error(error) => error,
            other => panic!(
                "{} {:?} did not fail: {other:?}",
                request.path, request.operation
            ),
        }
    }

    /// A request with the root token.
    pub(crate) fn root_request(&self, operation: Operation, path: &str, data: Value) -> Request {
        Request::new(operation, path)
            .with_data(data)
            .with_token(self.root.clone())
    }

    /// Creates a token as `parent` and returns its auth block.
    pub(crate) fn create_token(&mut self, parent: &str, data: Value) -> Auth {
        let request = Request::new(Operation::Update, "auth/token/create")
            .with_data(data)
            .with_token(parent);
        auth_of(self.ok(request))
    }

    /// Writes a policy as root.
    pub(crate) fn put_policy(&mut self, name: &str, text: &str) {
        let request = self.root_request(
            Operation::Update,
            &format!("sys/policy/{name}"),
            serde_json::json!({ "policy": text }),
        );
        assert_eq!(self.ok(request), Response::NoContent);
    }
}

pub(crate) fn logical(response: Response) -> Logical {
    match response {
        Response::Logical(logical) => *logical,
        other => panic!("expected an envelope, got {other:?}"),
    }
}

pub(crate) fn auth_of(response: Response) -> Auth {
    logical(response)
        .auth
        .expect("the response has an auth block")
}

pub(crate) fn data_of(response: Response) -> Map<String, Value> {
    logical(response).data.expect("the response has data")
}
