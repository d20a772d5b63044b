//! [`Node`]: one server's core, storage and writer, and the rule that runs each request.
//!
//! A request first runs on a read snapshot of the storage, wrapped so that every write fails.
//! Most requests finish there, in parallel. A request whose handler tries to write gets
//! [`Outcome::ReadOnly`]; its snapshot is dropped and the request reruns on the writer, which
//! commits it durably before the response is sent.
//!
//! Every response passes through [`Node::post_process`] before it is sent, whether the core or
//! an interceptor produced it, and a response that the primary returns for a forwarded request
//! must pass through it too. It does the work that belongs to the node the client talks to,
//! which is now the audit response entry.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use coffer_core::audit::AuditRun;
use coffer_core::error::Error;
use coffer_core::request::{Request, Response};
use coffer_core::storage::{ReadOnly, Storage};
use coffer_core::{Core, Ctx, Outcome, ids};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::audit::{self, AuditFiles};
use super::environment::Environment;
use super::writer::{CommitFeed, Writer, WriterLimits};

/// A finished request: its id, for the envelope, and its result.
#[derive(Debug)]
pub struct Executed {
    /// The id the request ran with.
    pub request_id: String,
    /// The response or the error.
    pub result: Result<Response, Error>,
}

/// The future an [`Interceptor`] returns.
pub type Intercepted<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

/// Runs the requests that the core cannot run alone because they need the network, such as
/// a secondary's activation, which talks to the primary between its storage steps.
pub trait Interceptor: Send + Sync + 'static {
    /// Returns the future that answers `request`, or `None` to let the core run it.
    fn intercept<'a>(&'a self, request: &'a Request) -> Option<Intercepted<'a>>;
}

/// A running node: the core, its storage and the single writer.
pub struct Node<S, E> {
    core: Arc<Core>,
    storage: Arc<S>,
    environment: Arc<E>,
    writer: Writer,
    interceptor: OnceLock<Arc<dyn Interceptor>>,
    audit: AuditFiles,
}

impl<S, E> Node<S, E>
where
    S: Storage + 'static,
    E: Environment,
{
    /// Starts a node over `storage`, with its writer thread.
    pub fn start(
        core: Core,
        storage: S,
        environment: E,
        limits: WriterLimits,
    ) -> std::io::Result<Node<S, E>> {
        let core = Arc::new(core);
        let storage = Arc::new(storage);
        let environment = Arc::new(environment);
        let writer = Writer::spawn(
            Arc::clone(&core),
            Arc::clone(&storage),
            Arc::clone(&environment),
            limits,
        )?;
        Ok(Node {
            core,
            storage,
            environment,
            writer,
            interceptor: OnceLock::new(),
            audit: AuditFiles::new(),
        })
    }

    /// Starts a node whose writes commit on the submitting thread instead of a writer thread,
    /// for single-threaded simulations over [`coffer_core::storage::MemStorage`].
    pub fn start_inline(core: Core, storage: S, environment: E) -> Node<S, E> {
        let core = Arc::new(core);
        let storage = Arc::new(storage);
        let environment = Arc::new(environment);
        let writer = Writer::inline(
            Arc::clone(&core),
            Arc::clone(&storage),
            Arc::clone(&environment),
        );
        Node {
            core,
            storage,
            environment,
            writer,
            interceptor: OnceLock::new(),
            audit: AuditFiles::new(),
        }
    }

    /// Returns the node's core.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// Returns the node's storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Returns a shared handle to the node's core, for tasks that outlive a borrow.
    pub fn core_handle(&self) -> Arc<Core> {
        Arc::clone(&self.core)
    }

    /// Returns a shared handle to the node's storage, for tasks that outlive a borrow.
    pub fn storage_handle(&self) -> Arc<S> {
        Arc::clone(&self.storage)
    }

    /// Returns the feed of the WAL entries the writer commits, for the replication sessions.
    pub fn commit_feed(&self) -> &CommitFeed {
        self.writer.feed()
    }

    /// Installs the interceptor; only the first one installed is kept.
    pub fn set_interceptor(&self, interceptor: Arc<dyn Interceptor>) {
        let _ = self.interceptor.set(interceptor);
    }

    /// Returns a fresh RNG seeded from the node's environment.
    pub fn rng(&self) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.environment.rng_seed())
    }

    /// Returns the node's environment.
    pub fn environment(&self) -> &E {
        &self.environment
    }

    /// Runs one request to its result. A request without an id gets a fresh UUID.
    pub async fn execute(&self, mut request: Request) -> Executed {
        let mut rng = self.rng();
        if request.id.is_empty() {
            request.id = ids::uuid(&mut rng);
        }
        let request_id = request.id.clone();
        let audit = match self.audit_request(&request, &mut rng) {
            Ok(audit) => audit,
            Err(error) => {
                return Executed {
                    request_id,
                    result: Err(error),
                };
            }
        };
        let intercepted = self
            .interceptor
            .get()
            .and_then(|interceptor| interceptor.intercept(&request));
        let result = match intercepted {
            Some(answer) => answer.await,
            None => self.execute_in_core(request.clone()).await,
        };
        let result = self.post_process(&request, audit.as_ref(), result);
        Executed { request_id, result }
    }

    /// Finishes a response on this node, after it exists and before it is sent: writes the
    /// audit response entry (and fails the request with 500 when no device records it).
    /// `audit` is what [`Core::audit_begin`] returned before the request ran.
    ///
    /// TODO: response wrapping still happens inside `Core::dispatch`, on the node that runs the
    /// handler. A forwarded request needs it moved here, so that the wrapping token is local.
    pub fn post_process(
        &self,
        request: &Request,
        audit: Option<&AuditRun>,
        result: Result<Response, Error>,
    ) -> Result<Response, Error> {
        if let Some(run) = audit {
            let lines = run.response_lines(self.environment.now(), request, &result);
            self.audit.write(&self.core, &lines)?;
        }
        result
    }

    /// Opens the audit files, then writes the request entry before the request runs. Fails
    /// when the entry cannot be recorded, so the request is refused without running.
    fn audit_request(
        &self,
        request: &Request,
        rng: &mut ChaCha20Rng,
    ) -> Result<Option<AuditRun>, Error> {
        let mut ctx = Ctx::new(self.environment.now(), rng);
        let (run, may_enable) = self.storage.read(|txn| {
            let devices = self.core.audit_devices(txn)?;
            self.audit.sync(&self.core, &devices);
            let mut snapshot = ReadOnly(txn);
            let may_enable = audit::is_file_enable(request)
                && self.core.may_run(&mut ctx, request, &mut snapshot)?;
            let run = self.core.audit_begin(&mut ctx, request, &mut snapshot)?;
            Ok::<_, Error>((run, may_enable))
        })??;
        if may_enable {
            audit::check_enable(request)?;
        }
        if let Some(run) = &run {
            let lines = run.request_lines(ctx.now, request);
            self.audit.write(&self.core, &lines)?;
        }
        Ok(run)
    }

    /// Runs one request in the core, past the interceptor: on a read snapshot first, then on
    /// the writer when it writes.
    pub async fn execute_in_core(&self, request: Request) -> Result<Response, Error> {
        let mut rng = self.rng();
        match self.execute_read(&request, &mut rng) {
            Ok(Outcome::Response(response)) => Ok(response),
            Ok(Outcome::Error(error)) | Err(error) => Err(error),
            Ok(Outcome::ReadOnly(_)) => self.execute_write(request).await,
        }
    }

    /// Has the writer revoke the leases that have ended, and returns how many it revoked.
    pub async fn expire_leases(&self) -> Result<u64, Error> {
        let receiver = self.writer.submit_lease_expiry()?;
        let response = match receiver.await {
            Ok(result) => result?,
            Err(_) => return Err(writer_stopped()),
        };
        match response {
            Response::Raw { body, .. } => Ok(body.as_u64().unwrap_or_default()),
            _ => Ok(0),
        }
    }

    /// Stops the writer after it has committed every queued request.
    pub fn shutdown(&self) {
        self.writer.close();
    }

    fn execute_read(&self, request: &Request, rng: &mut ChaCha20Rng) -> Result<Outcome, Error> {
        let mut ctx = Ctx::new(self.environment.now(), rng);
        let outcome = self.storage.read(|txn| {
            let mut snapshot = ReadOnly(txn);
            self.core.handle_request(&mut ctx, request, &mut snapshot)
        })?;
        Ok(outcome)
    }

    async fn execute_write(&self, request: Request) -> Result<Response, Error> {
        let receiver = self.writer.submit(request)?;
        match receiver.await {
            Ok(result) => result,
            Err(_) => Err(writer_stopped()),
        }
    }
}

fn writer_stopped() -> Error {
    Error::internal("the storage writer stopped before it returned a result for the request")
}

#[cfg(test)]
mod tests {
    use coffer_core::CoreConfig;
    use coffer_core::request::Operation;
    use coffer_core::storage::MemStorage;

    use super::*;
    use crate::server::environment::SystemEnvironment;

    fn node() -> Node<MemStorage, SystemEnvironment> {
        let core = Core::new(CoreConfig::default());
        Node::start(
            core,
            MemStorage::new(),
            SystemEnvironment,
            WriterLimits::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn sealed_node_rejects_token_requests() {
        let node = node();
        let request = Request::new(Operation::Read, "secret/foo").with_token("t");
        let executed = node.execute(request).await;
        assert_eq!(executed.request_id.len(), 36);
        let error = executed.result.unwrap_err();
        assert_eq!(error.status(), 503);
        node.shutdown();
    }

    /// Initialises and unseals `node` with one share and returns the root token.
    async fn unseal(node: &Node<MemStorage, SystemEnvironment>) -> String {
        let init = Request::new(Operation::Update, "sys/init")
            .with_data(serde_json::json!({"secret_shares": 1, "secret_threshold": 1}));
        let Ok(Response::Raw { body, .. }) = node.execute(init).await.result else {
            panic!("sys/init returns a raw body");
        };
        let key = body["keys"][0].as_str().unwrap().to_owned();
        let unseal = Request::new(Operation::Update, "sys/unseal")
            .with_data(serde_json::json!({"key": key}));
        node.execute(unseal).await.result.unwrap();
        body["root_token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn overlong_key_fails_alone_with_400() {
        let node = node();
        let root = unseal(&node).await;
        let long_path = format!("cubbyhole/{}", "k".repeat(600));
        let write = |path: String| {
            Request::new(Operation::Update, path)
                .with_data(serde_json::json!({"v": "1"}))
                .with_token(root.clone())
        };
        let (bad, good, other) = tokio::join!(
            node.execute(write(long_path)),
            node.execute(write("cubbyhole/short".into())),
            node.execute(write("cubbyhole/other".into())),
        );
        let error = bad.result.unwrap_err();
        assert_eq!(error.status(), 400, "{error}");
        assert!(error.to_string().contains("maximum of 511"), "{error}");
        assert!(good.result.is_ok());
        assert!(other.result.is_ok());
        node.shutdown();
    }

    #[tokio::test]
    async fn shared_writes_are_logged_with_their_merkle_updates() {
        use coffer_core::replication::merkle::Merkle;
        use coffer_core::replication::wal::Wal;

        let node = node();
        let root = unseal(&node).await;
        let before = node.storage().read(|txn| Wal::head(txn)).unwrap().unwrap();

        let mount = Request::new(Operation::Update, "sys/mounts/kv")
            .with_data(serde_json::json!({"type": "kv"}))
            .with_token(root.clone());
        node.execute(mount).await.result.unwrap();
        let write = Request::new(Operation::Update, "kv/greeting")
            .with_data(serde_json::json!({"text": "hello"}))
            .with_token(root);
        node.execute(write).await.result.unwrap();

        let (head, check) = node
            .storage()
            .read(|txn| (Wal::head(txn).unwrap(), Merkle::check(txn).unwrap()))
            .unwrap();
        assert_eq!(
            head.index,
            before.index + 2,
            "one entry per committed batch"
        );
        assert!(
            !check.is_corrupted(),
            "the index matches a rebuild: {check:?}"
        );
        let entry = node
            .storage()
            .read(|txn| Wal::entry(txn, head.index))
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(entry.hash, head.hash);
        assert!(entry.ops.iter().any(|op| op.key().starts_with("logical/")));
        node.shutdown();
    }

    #[tokio::test]
    async fn activation_token_unwraps_once_through_writer() {
        use coffer_core::replication::wal::Wal;
        use serde_json::json;

        let node = node();
        let root = unseal(&node).await;
        let enable = Request::new(
            Operation::Update,
            "sys/replication/performance/primary/enable",
        )
        .with_token(root.clone());
        node.execute(enable).await.result.unwrap();
        let issue = Request::new(
            Operation::Update,
            "sys/replication/performance/primary/secondary-token",
        )
        .with_data(json!({"id": "east"}))
        .with_token(root);
        let Ok(Response::Logical(issued)) = node.execute(issue).await.result else {
            panic!("secondary-token returns an envelope");
        };
        let jwt = issued.wrap_info.unwrap().token.expose().to_owned();

        let unwrap = Request::new(Operation::Update, "sys/wrapping/unwrap")
            .with_data(json!({ "token": jwt }));
        node.execute(unwrap.clone()).await.result.unwrap();
        let again = node.execute(unwrap).await.result.unwrap_err();
        assert_eq!(again.status(), 400);

        let status = Request::new(Operation::Read, "sys/replication/performance/status");
        let Ok(Response::Logical(status)) = node.execute(status).await.result else {
            panic!("status returns an envelope");
        };
        let head = node.storage().read(|txn| Wal::head(txn)).unwrap().unwrap();
        let data = status.data.unwrap();
        assert_eq!(data["mode"], "primary");
        assert_eq!(data["last_wal"], json!(head.index));
        assert_eq!(data["cluster_id"], json!(head.epoch.cluster_id));
        node.shutdown();
    }
}
