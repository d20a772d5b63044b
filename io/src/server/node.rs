//! [`Node`]: one server's core, storage and writer, and the rule that runs each request.
//!
//! A request first runs on a read snapshot of the storage, wrapped so that every write fails.
//! Most requests finish there, in parallel. A request whose handler tries to write gets
//! [`Outcome::ReadOnly`]; its snapshot is dropped and the request reruns on the writer, which
//! commits it durably before the response is sent.
//!
//! On a secondary, a request whose handler tries to write replicated data gets
//! [`Outcome::Forward`] on either path. The node forwards it to the primary through its
//! [`Forwarder`], waits until it has applied the primary's write, and then runs the local
//! post-processing (response wrapping) in [`Core::finish`] on its writer.
//!
//! Every response passes through [`Node::post_process`] before it is sent, whether the core or
//! an interceptor produced it, and a response that the primary returns for a forwarded request
//! passes through it too. It does the work that belongs to the node the client talks to,
//! which is now the audit response entry.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use coffer_core::audit::AuditRun;
use coffer_core::error::Error;
use coffer_core::forwarding::{ForwardedAnswer, ForwardedRequest, ForwardedResult, IndexKey};
use coffer_core::replication::position::Position;
use coffer_core::replication::wal::Wal;
use coffer_core::request::{Caller, Request, Response};
use coffer_core::storage::{ReadOnly, Storage};
use coffer_core::{Core, Ctx, Outcome, ids};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::audit::{self, AuditFiles};
use super::environment::Environment;
use super::writer::{CommitFeed, Work, Writer, WriterLimits, Written};

/// How often a wait for a WAL index reads the storage's head again.
const WAL_WAIT_POLL: Duration = Duration::from_millis(10);

/// The default of `best_effort_wal_wait_duration`.
const DEFAULT_WAL_WAIT: Duration = Duration::from_secs(2);

/// A finished request: its id, for the envelope, its result, and the `X-Vault-Index` of the
/// state it changed.
#[derive(Debug)]
pub struct Executed {
    /// The id the request ran with.
    pub request_id: String,
    /// The response or the error.
    pub result: Result<Response, Error>,
    /// The signed `X-Vault-Index` header value, when the request changed replicated state.
    pub index: Option<String>,
}

/// The future a [`Forwarder`] returns.
pub type Forwarding<'a> = Pin<Box<dyn Future<Output = Result<ForwardedAnswer, Error>> + Send + 'a>>;

/// Sends a secondary's forwarded requests to its primary. The cluster port's forwarding
/// client implements it.
pub trait Forwarder: Send + Sync + 'static {
    /// Sends `request` and returns the primary's response, retrying with the same request id
    /// on connection failures. Fails with 503 when the primary cannot be reached in time.
    fn forward(&self, request: ForwardedRequest) -> Forwarding<'_>;
}

/// The future an [`Interceptor`] returns.
pub type Intercepted<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

/// Runs the requests that the core cannot run alone because they need the network, such as
/// a secondary's activation, which talks to the primary between its storage steps.
pub trait Interceptor: Send + Sync + 'static {
    /// Returns the future that responds to `request`, or `None` to let the core run it.
    fn intercept<'a>(&'a self, request: &'a Request) -> Option<Intercepted<'a>>;
}

/// Runs after a committed write raised the core's replication generation, before the
/// response is sent, so that what the write changed (such as a revoked certificate) is in
/// force when the client learns of it.
pub type RoleListener = Arc<dyn Fn() + Send + Sync>;

/// A running node: the core, its storage and the single writer.
pub struct Node<S, E> {
    core: Arc<Core>,
    storage: Arc<S>,
    environment: Arc<E>,
    writer: Writer,
    interceptor: OnceLock<Arc<dyn Interceptor>>,
    forwarder: RwLock<Option<Arc<dyn Forwarder>>>,
    wal_wait: RwLock<Duration>,
    role_listener: OnceLock<RoleListener>,
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
            forwarder: RwLock::new(None),
            wal_wait: RwLock::new(DEFAULT_WAL_WAIT),
            role_listener: OnceLock::new(),
            audit: AuditFiles::new(),
        })
    }

    /// Starts a node whose writes commit on the submitting thread instead of a writer thread,
    /// for single-threaded simulations over [`coffer_core::storage::MemStorage`]. Of `limits`,
    /// only the WAL and log shipper bounds apply.
    pub fn start_inline(
        core: Core,
        storage: S,
        environment: E,
        limits: WriterLimits,
    ) -> Node<S, E> {
        let core = Arc::new(core);
        let storage = Arc::new(storage);
        let environment = Arc::new(environment);
        let writer = Writer::inline(
            Arc::clone(&core),
            Arc::clone(&storage),
            Arc::clone(&environment),
            limits,
        );
        Node {
            core,
            storage,
            environment,
            writer,
            interceptor: OnceLock::new(),
            forwarder: RwLock::new(None),
            wal_wait: RwLock::new(DEFAULT_WAL_WAIT),
            role_listener: OnceLock::new(),
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

    /// Installs the role listener; only the first one installed is kept.
    pub fn set_role_listener(&self, listener: RoleListener) {
        let _ = self.role_listener.set(listener);
    }

    /// Returns a fresh RNG seeded from the node's environment.
    pub fn rng(&self) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(self.environment.rng_seed())
    }

    /// Returns the node's environment.
    pub fn environment(&self) -> &E {
        &self.environment
    }

    /// Installs or removes the forwarder a secondary sends its replicated writes through.
    pub fn set_forwarder(&self, forwarder: Option<Arc<dyn Forwarder>>) {
        *self
            .forwarder
            .write()
            .unwrap_or_else(PoisonError::into_inner) = forwarder;
    }

    /// Sets `best_effort_wal_wait_duration`: how long a secondary waits for its forwarded write
    /// to arrive, and any node for the state an `X-Vault-Index` names.
    pub fn set_wal_wait(&self, wait: Duration) {
        *self
            .wal_wait
            .write()
            .unwrap_or_else(PoisonError::into_inner) = wait;
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
                    index: None,
                };
            }
        };
        let intercepted = self
            .interceptor
            .get()
            .and_then(|interceptor| interceptor.intercept(&request));
        let (result, position) = match intercepted {
            Some(answer) => (answer.await, None),
            None => self.run_indexed(request.clone()).await,
        };
        let result = self.post_process(&request, audit.as_ref(), result);
        let index = match (&result, position) {
            (Ok(_), Some(position)) => self.index_header(&position),
            _ => None,
        };
        Executed {
            request_id,
            result,
            index,
        }
    }

    /// Finishes a response on this node, after it exists and before it is sent: writes the
    /// audit response entry (and fails the request with 500 when no device records it).
    /// `audit` is what [`Core::audit_begin`] returned before the request ran.
    ///
    /// Response wrapping runs earlier, in [`Core::finish`]. A local request is wrapped inside
    /// the handler's transaction, and a response forwarded from the primary on this node's
    /// writer, so the wrapping token is always local and is audited here with the response.
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
    /// the writer when it writes, and on the primary when it writes replicated data on a
    /// secondary.
    pub async fn execute_in_core(&self, request: Request) -> Result<Response, Error> {
        self.run_in_core(request).await.0
    }

    /// Runs a request that the secondary `secondary_id` forwarded, at most once, on the writer.
    pub async fn execute_forwarded(
        &self,
        secondary_id: &str,
        request: ForwardedRequest,
    ) -> ForwardedAnswer {
        let request_id = request.request_id.clone();
        let work = Work::Forwarded {
            secondary_id: secondary_id.to_owned(),
            request: Box::new(request),
        };
        let written = self.submit(work).await;
        ForwardedAnswer {
            request_id,
            result: ForwardedResult::from_result(&written.result),
            position: written.result.is_ok().then_some(written.position).flatten(),
        }
    }

    /// Waits for the state the request's `X-Vault-Index` names, if any, then runs it in the core.
    async fn run_indexed(&self, request: Request) -> (Result<Response, Error>, Option<Position>) {
        if let Some(header) = &request.index {
            if let Err(error) = self.wait_for_index(header).await {
                return (Err(error), None);
            }
        }
        self.run_in_core(request).await
    }

    async fn run_in_core(&self, request: Request) -> (Result<Response, Error>, Option<Position>) {
        let mut rng = self.rng();
        let caller = match self.execute_read(&request, &mut rng) {
            Ok(Outcome::Response(response)) => return (Ok(response), None),
            Ok(Outcome::Error(error)) | Err(error) => return (Err(error), None),
            Ok(Outcome::Forward(caller)) => caller,
            Ok(Outcome::ReadOnly(_)) => {
                let generation = self.core.replication_generation();
                let written = self.submit(Work::Request(request.clone())).await;
                if self.core.replication_generation() != generation {
                    if let Some(listener) = self.role_listener.get() {
                        listener();
                    }
                }
                match written.result {
                    Err(error) if self.core.is_forward(&error) => written.caller,
                    result => return (result, written.position),
                }
            }
        };
        self.forward(request, caller).await
    }

    /// Forwards `request` to the primary as `caller`, waits for the primary's write to
    /// arrive, then runs the local post-processing.
    async fn forward(
        &self,
        request: Request,
        caller: Option<Caller>,
    ) -> (Result<Response, Error>, Option<Position>) {
        let Some(caller) = caller else {
            // Logins and other requests without a token are never forwarded, because the
            // primary runs a forward only as an authenticated caller.
            let primary = self.core.secondary_primary_addr().unwrap_or_default();
            let message = format!(
                "{} writes replicated data, and a performance secondary forwards only requests \
                 with a client token; send this request to the primary at {primary}",
                request.path
            );
            return (Err(Error::bad_request(message)), None);
        };
        let forwarder = self
            .forwarder
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(forwarder) = forwarder else {
            return (
                Err(Error::api(
                    503,
                    "this performance secondary is not connected to its primary yet; retry \
                     the write shortly",
                )),
                None,
            );
        };
        let mut rng = self.rng();
        let forwarded = ForwardedRequest::new(ids::uuid(&mut rng), &request, &caller);
        let answer = match forwarder.forward(forwarded).await {
            Ok(answer) => answer,
            Err(error) => return (Err(error), None),
        };
        let response = match answer.result.into_result() {
            Ok(response) => response,
            Err(error) => return (Err(error), None),
        };
        let mut response = response;
        if let Some(position) = &answer.position {
            if !self.wait_for_wal(position.index).await {
                add_stale_warning(&mut response, position);
            }
        }
        let written = self.submit(Work::Finish { request, response }).await;
        (written.result, answer.position)
    }

    /// Waits until this node has applied WAL index `index`, up to the configured wait.
    /// Returns whether it did.
    async fn wait_for_wal(&self, index: u64) -> bool {
        let wait = *self.wal_wait.read().unwrap_or_else(PoisonError::into_inner);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let head = self.storage.read(|txn| Wal::head(txn));
            if let Ok(Ok(head)) = head {
                if head.index >= index {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(WAL_WAIT_POLL).await;
        }
    }

    /// Checks an `X-Vault-Index` header and waits for the state it names: 400 for a header
    /// that is invalid or from another replication set, 412 when the state does not arrive in
    /// time.
    async fn wait_for_index(&self, header: &str) -> Result<(), Error> {
        let keyring = self.core.barrier.keyring()?;
        let state = IndexKey::from_keyring(&keyring)
            .verify(header)
            .map_err(|error| Error::bad_request(error.to_string()))?;
        if self.wait_for_wal(state.replicated_index).await {
            return Ok(());
        }
        Err(Error::api(
            412,
            format!(
                "this node has not yet applied the state of X-Vault-Index (replicated index \
                 {}); retry the request, or send it to the primary",
                state.replicated_index
            ),
        ))
    }

    fn index_header(&self, position: &Position) -> Option<String> {
        let keyring = self.core.barrier.keyring().ok()?;
        Some(IndexKey::from_keyring(&keyring).encode(0, position.index))
    }

    async fn submit(&self, work: Work) -> Written {
        let failed = |error| Written {
            result: Err(error),
            caller: None,
            position: None,
        };
        let receiver = match self.writer.submit_work(work) {
            Ok(receiver) => receiver,
            Err(error) => return failed(error),
        };
        match receiver.await {
            Ok(written) => written,
            Err(_) => failed(writer_stopped()),
        }
    }

    /// Has the writer revoke the leases that have ended, and returns how many it revoked.
    pub async fn expire_leases(&self) -> Result<u64, Error> {
        let receiver = self.writer.submit_lease_expiry()?;
        let response = match receiver.await {
            Ok(written) => written.result?,
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
}

/// Adds the warning a client gets when its forwarded write had not arrived on this secondary
/// within `best_effort_wal_wait_duration`.
fn add_stale_warning(response: &mut Response, position: &Position) {
    if let Response::Logical(logical) = response {
        logical.warnings.push(format!(
            "the write was applied on the primary at WAL index {} but has not reached this \
             performance secondary yet; reads here may return stale data until it arrives",
            position.index
        ));
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

    #[tokio::test]
    async fn vault_index_ahead_gets_412() {
        let node = node();
        let root = unseal(&node).await;
        node.set_wal_wait(Duration::from_millis(50));
        let keyring = node.core().barrier.keyring().unwrap();
        let key = IndexKey::from_keyring(&keyring);
        let head = node.storage().read(|txn| Wal::head(txn)).unwrap().unwrap();

        let mut current = Request::new(Operation::Read, "sys/mounts").with_token(root.clone());
        current.index = Some(key.encode(0, head.index));
        assert!(node.execute(current).await.result.is_ok());

        let mut ahead = Request::new(Operation::Read, "sys/mounts").with_token(root.clone());
        ahead.index = Some(key.encode(0, head.index + 100));
        let error = node.execute(ahead).await.result.unwrap_err();
        assert_eq!(error.status(), 412, "{error}");
        assert!(error.to_string().contains("X-Vault-Index"), "{error}");

        let foreign = IndexKey::from_bytes([9; 32], "other-set");
        let mut other = Request::new(Operation::Read, "sys/mounts").with_token(root);
        other.index = Some(foreign.encode(0, 1));
        let error = node.execute(other).await.result.unwrap_err();
        assert_eq!(error.status(), 400, "{error}");
        assert!(error.to_string().contains("other-set"), "{error}");
        node.shutdown();
    }

    #[tokio::test]
    async fn shared_write_returns_vault_index() {
        let node = node();
        let root = unseal(&node).await;
        let mount = Request::new(Operation::Update, "sys/mounts/kv")
            .with_data(serde_json::json!({"type": "kv"}))
            .with_token(root.clone());
        let executed = node.execute(mount).await;
        assert!(executed.result.is_ok());
        let header = executed
            .index
            .expect("a shared write returns X-Vault-Index");
        let keyring = node.core().barrier.keyring().unwrap();
        let state = IndexKey::from_keyring(&keyring).verify(&header).unwrap();
        let head = node.storage().read(|txn| Wal::head(txn)).unwrap().unwrap();
        assert_eq!(state.replicated_index, head.index);

        let read = Request::new(Operation::Read, "sys/mounts").with_token(root);
        assert_eq!(
            node.execute(read).await.index,
            None,
            "a read changes nothing"
        );
        node.shutdown();
    }

    #[test]
    fn stale_warning_names_the_index() {
        let mut response = Response::data(serde_json::Map::new());
        let position = Position {
            index: 17,
            ..Position::default()
        };
        add_stale_warning(&mut response, &position);
        let Response::Logical(logical) = response else {
            panic!("the response stays an envelope");
        };
        assert_eq!(logical.warnings.len(), 1);
        assert!(
            logical.warnings[0].contains("WAL index 17"),
            "{:?}",
            logical.warnings
        );
        assert!(
            logical.warnings[0].contains("stale"),
            "{:?}",
            logical.warnings
        );
    }
}
