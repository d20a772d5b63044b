//! The node's single writer: a dedicated thread that runs write requests in batches, one
//! storage transaction per batch (group commit).
//!
//! LMDB write transactions cannot move between threads and LMDB allows one writer at a time,
//! so every write runs on this thread. Requests wait in a bounded queue; a full queue rejects
//! the request with 503 instead of letting memory grow.
//!
//! Each commit that writes shared data logs one WAL entry. The writer hands that entry to the
//! [`CommitFeed`], which keeps the newest entries in a log shipper and announces the new head
//! index to the replication sessions.

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use coffer_core::error::Error;
use coffer_core::forwarding::{ForwardedRequest, execute_forwarded};
use coffer_core::replication::apply::log_shared_writes;
use coffer_core::replication::config::ReplicationConfig;
use coffer_core::replication::position::Position;
use coffer_core::replication::shipper::LogShipper;
use coffer_core::replication::wal::{Entry, Wal};
use coffer_core::request::{Caller, Request, Response};
use coffer_core::storage::{
    Overlay, Partition, Storage, StorageError, Transaction, WriteSet, apply_writes,
};
use coffer_core::{Core, Ctx};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::{oneshot, watch};

use super::environment::Environment;

/// Bounds of the writer's queue and batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterLimits {
    /// Maximum number of requests waiting for the writer. One more is rejected with 503.
    pub queue_length: usize,
    /// Maximum number of requests committed together in one transaction.
    pub batch_size: usize,
    /// Request bytes after which a batch takes no more requests. It keeps one WAL entry, which
    /// replicates as one message, well below the message size limit.
    pub batch_bytes: usize,
    /// Newest WAL entries kept on disk; each commit trims the older ones.
    pub wal_retain: u64,
    /// Maximum number of entries the log shipper keeps in memory.
    pub logshipper_buffer_length: usize,
    /// Maximum total size, in bytes, of the entries in the log shipper.
    pub logshipper_buffer_size: usize,
}

impl WriterLimits {
    /// Takes the WAL and log shipper bounds from a replication config.
    pub fn with_replication(self, config: &ReplicationConfig) -> WriterLimits {
        WriterLimits {
            wal_retain: config.wal_retain,
            logshipper_buffer_length: config.logshipper_buffer_length,
            logshipper_buffer_size: config.logshipper_buffer_size,
            ..self
        }
    }
}

impl Default for WriterLimits {
    fn default() -> WriterLimits {
        let replication = ReplicationConfig::default();
        WriterLimits {
            queue_length: 1024,
            batch_size: 128,
            batch_bytes: 8 << 20,
            wal_retain: replication.wal_retain,
            logshipper_buffer_length: replication.logshipper_buffer_length,
            logshipper_buffer_size: replication.logshipper_buffer_size,
        }
    }
}

/// The destination of committed WAL entries: the log shipper, which keeps the newest entries
/// in memory for catch-up, and a watch channel of the head index, which wakes the replication
/// sessions. Clones share both.
#[derive(Clone)]
pub struct CommitFeed {
    shipper: Arc<Mutex<LogShipper>>,
    head: Arc<watch::Sender<u64>>,
}

impl CommitFeed {
    /// Makes a feed whose log shipper keeps at most `length` entries and `bytes` bytes.
    pub fn new(length: usize, bytes: usize) -> CommitFeed {
        let (head, _) = watch::channel(0);
        CommitFeed {
            shipper: Arc::new(Mutex::new(LogShipper::new(length, bytes))),
            head: Arc::new(head),
        }
    }

    /// Makes a feed with the log shipper bounds of `limits`.
    pub fn from_limits(limits: &WriterLimits) -> CommitFeed {
        CommitFeed::new(
            limits.logshipper_buffer_length,
            limits.logshipper_buffer_size,
        )
    }

    /// Returns the shared log shipper. Hold its lock only for one synchronous step.
    pub fn shipper(&self) -> &Arc<Mutex<LogShipper>> {
        &self.shipper
    }

    /// Returns a receiver of the head index, which changes after each published entry.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Returns the index of the newest published entry, 0 before any.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Adds a committed entry to the log shipper, then announces its index. Call it after the
    /// entry's transaction has committed, in commit order.
    pub fn publish(&self, entry: Entry) {
        let index = entry.index;
        self.shipper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
        self.head.send_replace(index);
    }
}

/// The result a write request ends with.
pub type WriteResult = Result<Response, Error>;

/// The outcome of one job on the writer.
#[derive(Debug)]
pub struct Written {
    /// The response or the error.
    pub result: WriteResult,
    /// The authenticated caller of a client request, which a secondary needs to forward the
    /// request when its handler wrote replicated data.
    pub caller: Option<Caller>,
    /// The WAL head after the commit, when the commit logged replicated writes or the job was
    /// a forwarded request.
    pub position: Option<Position>,
}

/// One unit of work for the writer.
#[derive(Debug)]
pub enum Work {
    /// A client request: authentication, then the handler.
    Request(Request),
    /// A request a secondary forwarded, run at most once by the primary's executor.
    Forwarded {
        /// The secondary's id, from its certificate.
        secondary_id: String,
        /// The request.
        request: Box<ForwardedRequest>,
    },
    /// The local post-processing of a response the primary returned for a forwarded request.
    Finish {
        /// The client's request, with its wrap TTL.
        request: Request,
        /// The primary's response.
        response: Response,
    },
    /// Revoke the leases that have ended, as [`Core::handle_timeout`] does.
    ExpireLeases,
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Written>,
}

/// Commits one batch on the calling thread.
type InlineCommit = Arc<dyn Fn(Vec<Job>) + Send + Sync>;

/// A handle to the writer: a dedicated thread, or inline commits on the caller's thread.
pub struct Writer {
    sender: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    inline: Mutex<Option<InlineCommit>>,
    limits: WriterLimits,
    feed: CommitFeed,
}

impl Writer {
    /// Starts the writer thread.
    pub fn spawn<S, E>(
        core: Arc<Core>,
        storage: Arc<S>,
        environment: Arc<E>,
        limits: WriterLimits,
    ) -> std::io::Result<Writer>
    where
        S: Storage + 'static,
        E: Environment,
    {
        let (sender, receiver) = mpsc::sync_channel(limits.queue_length.max(1));
        let batch_size = limits.batch_size.max(1);
        let batch_bytes = limits.batch_bytes;
        let wal = Wal::new(limits.wal_retain);
        let feed = CommitFeed::from_limits(&limits);
        let committer = Committer {
            core,
            storage,
            environment,
            wal,
            feed: feed.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("coffer-writer".into())
            .spawn(move || run(&committer, &receiver, batch_size, batch_bytes))?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            inline: Mutex::new(None),
            limits,
            feed,
        })
    }

    /// Makes a writer that commits each request on the thread that submits it, as a batch of
    /// one. A single-threaded simulation uses it, because a writer thread would run outside
    /// the simulated schedule. Servers use [`Writer::spawn`], which batches commits and keeps
    /// blocking disk flushes off the async workers.
    ///
    /// Of `limits`, only the WAL and log shipper bounds apply, because there is no queue and every
    /// batch contains one request.
    pub fn inline<S, E>(
        core: Arc<Core>,
        storage: Arc<S>,
        environment: Arc<E>,
        limits: WriterLimits,
    ) -> Writer
    where
        S: Storage + 'static,
        E: Environment,
    {
        let limits = WriterLimits {
            queue_length: 0,
            batch_size: 1,
            ..limits
        };
        let feed = CommitFeed::from_limits(&limits);
        let committer = Committer {
            core,
            storage,
            environment,
            wal: Wal::new(limits.wal_retain),
            feed: feed.clone(),
        };
        let commit: InlineCommit = Arc::new(move |batch| committer.commit_batch(batch));
        Writer {
            sender: Mutex::new(None),
            thread: Mutex::new(None),
            inline: Mutex::new(Some(commit)),
            limits,
            feed,
        }
    }

    /// Returns the feed that receives every committed WAL entry.
    pub fn feed(&self) -> &CommitFeed {
        &self.feed
    }

    /// Queues `request` and returns the receiver of its result. Fails with 503 when the queue
    /// is full or the writer has stopped.
    pub fn submit(&self, request: Request) -> Result<oneshot::Receiver<Written>, Error> {
        self.submit_work(Work::Request(request))
    }

    /// Queues a revocation of the leases that have ended by the time the writer runs it. The
    /// result is a [`Response::Raw`] whose body is the number of leases revoked.
    pub fn submit_lease_expiry(&self) -> Result<oneshot::Receiver<Written>, Error> {
        self.submit_work(Work::ExpireLeases)
    }

    /// Queues any kind of work, as [`Writer::submit`] does.
    pub fn submit_work(&self, work: Work) -> Result<oneshot::Receiver<Written>, Error> {
        let (reply, receiver) = oneshot::channel();
        let inline = self
            .inline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(commit) = inline {
            commit(vec![Job { work, reply }]);
            return Ok(receiver);
        }
        let guard = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(sender) = guard.as_ref() else {
            return Err(Error::api(503, "the server is shutting down"));
        };
        match sender.try_send(Job { work, reply }) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => Err(Error::api(
                503,
                format!(
                    "the write queue is full ({} requests waiting); retry later",
                    self.limits.queue_length
                ),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(Error::api(503, "the storage writer has stopped"))
            }
        }
    }

    /// Stops accepting requests, lets the writer commit everything already queued, and waits
    /// for its thread to end.
    pub fn close(&self) {
        drop(
            self.inline
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        drop(
            self.sender
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the storage writer thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Everything a commit needs, owned by the writer thread or by the inline commit closure.
struct Committer<S, E> {
    core: Arc<Core>,
    storage: Arc<S>,
    environment: Arc<E>,
    wal: Wal,
    feed: CommitFeed,
}

fn run<S: Storage, E: Environment>(
    committer: &Committer<S, E>,
    receiver: &Receiver<Job>,
    batch_size: usize,
    batch_bytes: usize,
) {
    // `recv` keeps returning queued jobs after the senders are gone, so a close drains the
    // queue before the thread ends.
    while let Ok(first) = receiver.recv() {
        let mut bytes = first.work.size();
        let mut batch = vec![first];
        while batch.len() < batch_size && bytes < batch_bytes {
            match receiver.try_recv() {
                Ok(job) => {
                    bytes += job.work.size();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        committer.commit_batch(batch);
    }
}

impl Work {
    /// Estimates the bytes this job writes, for the batch cap. A forwarded request counts its
    /// path and JSON data, and the post-processing of a forwarded response counts its client
    /// request. Lease expiry counts as nothing, because [`Core::handle_timeout`] bounds its own
    /// writes.
    fn size(&self) -> usize {
        match self {
            Work::Request(request) | Work::Finish { request, .. } => request_size(request),
            Work::Forwarded { request, .. } => request.path.len() + request.data_json.len(),
            Work::ExpireLeases => 0,
        }
    }
}

/// Estimates the bytes a request writes: its path and the lengths of the keys and strings in
/// its data. Structure and numbers count a few bytes each.
fn request_size(request: &Request) -> usize {
    fn value_size(value: &serde_json::Value) -> usize {
        match value {
            serde_json::Value::String(text) => text.len(),
            serde_json::Value::Array(items) => items.iter().map(|item| 1 + value_size(item)).sum(),
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(key, item)| key.len() + value_size(item))
                .sum(),
            _ => 8,
        }
    }
    let data: usize = request
        .data
        .iter()
        .map(|(key, value)| key.len() + value_size(value))
        .sum();
    request.path.len() + data
}

impl<S: Storage, E: Environment> Committer<S, E> {
    fn commit_batch(&self, batch: Vec<Job>) {
        let core = &*self.core;
        let environment = &*self.environment;
        let committed = self.storage.write(|txn| {
            let mut changed = BTreeSet::new();
            let mut results = Vec::with_capacity(batch.len());
            for job in &batch {
                results.push(run_job(core, environment, &job.work, txn, &mut changed)?);
            }
            // The whole batch becomes one WAL entry, written with its Merkle updates in the
            // same transaction as the data.
            let shared: Vec<String> = changed
                .iter()
                .filter(|(partition, _)| *partition == Partition::Shared)
                .map(|(_, key)| key.clone())
                .collect();
            let entry = log_shared_writes(txn, &self.wal, &shared)?;
            let head = Wal::head(txn)?;
            Ok::<_, StorageError>((results, changed, entry, head))
        });
        // NOTE: caches (mount tables, policies) reload only after the commit, so a request that
        // depends on a mount or policy written earlier in the same batch still reads the old
        // cache.
        match committed {
            Ok((results, changed, entry, head)) => {
                let logged = entry.is_some();
                if let Some(entry) = entry {
                    self.feed.publish(entry);
                }
                reload(core, &*self.storage, changed);
                for (job, (result, caller)) in batch.into_iter().zip(results) {
                    let forwarded = matches!(job.work, Work::Forwarded { .. });
                    let position = (logged || forwarded).then(|| head.clone());
                    let written = Written {
                        result,
                        caller,
                        position,
                    };
                    // A receiver that went away (timed out, disconnected) no longer needs it.
                    let _ = job.reply.send(written);
                }
            }
            Err(error) if batch.len() > 1 => {
                // One request's failure (a full map, a backend error) must not fail the others:
                // commit each on its own so only the requests that cause it fail.
                tracing::warn!(%error, requests = batch.len(), "write batch failed to commit; retrying its requests one by one");
                for job in batch {
                    self.commit_batch(vec![job]);
                }
            }
            Err(error) => {
                tracing::error!(%error, "write failed to commit");
                for job in batch {
                    let _ = job.reply.send(Written {
                        result: Err(Error::Storage(error.clone())),
                        caller: None,
                        position: None,
                    });
                }
            }
        }
    }
}

/// Runs one job inside the batch transaction and returns its result and caller.
fn run_job<E: Environment>(
    core: &Core,
    environment: &E,
    work: &Work,
    txn: &mut dyn Transaction,
    changed: &mut BTreeSet<(Partition, String)>,
) -> Result<(WriteResult, Option<Caller>), StorageError> {
    let mut rng = ChaCha20Rng::from_seed(environment.rng_seed());
    let mut ctx = Ctx::new(environment.now(), &mut rng);
    match work {
        Work::Request(request) => run_one(core, &mut ctx, request, txn, changed),
        Work::ExpireLeases => Ok((expire_leases(core, &mut ctx, txn, changed)?, None)),
        Work::Forwarded {
            secondary_id,
            request,
        } => {
            let mut overlay = Overlay::new(txn);
            let retry_window = coffer_core::forwarding::DEFAULT_RETRY_WINDOW;
            let result = execute_forwarded(
                core,
                &mut ctx,
                secondary_id,
                request,
                retry_window,
                &mut overlay,
            );
            let writes = overlay.into_writes();
            let result = match result {
                Ok(forwarded) => {
                    apply(txn, &writes, changed)?;
                    forwarded.into_result()
                }
                Err(error) => Err(error),
            };
            Ok((
                result.map_err(|error| unexpected_read_only(core, error)),
                None,
            ))
        }
        Work::Finish { request, response } => {
            let mut overlay = Overlay::new(txn);
            let response = response.clone();
            let result = core.finish(&mut ctx, request, &mut overlay, |_, _| Ok(response));
            let writes = overlay.into_writes();
            if result.is_ok() {
                apply(txn, &writes, changed)?;
            }
            Ok((
                result.map_err(|error| unexpected_read_only(core, error)),
                None,
            ))
        }
    }
}

/// Revokes the leases that ended by `ctx.now`, keeping the writes only on success.
fn expire_leases(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
    changed: &mut BTreeSet<(Partition, String)>,
) -> Result<WriteResult, StorageError> {
    let mut overlay = Overlay::new(txn);
    let result = core.handle_timeout(ctx, &mut overlay);
    let writes = overlay.into_writes();
    match result {
        Ok(revoked) => {
            apply(txn, &writes, changed)?;
            Ok(Ok(Response::raw(serde_json::Value::from(revoked))))
        }
        Err(error) => Ok(Err(unexpected_read_only(core, error))),
    }
}

/// Runs one client request. Authentication writes (token use counts) are kept even when the
/// handler fails; the handler's writes are kept only on success.
fn run_one(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
    changed: &mut BTreeSet<(Partition, String)>,
) -> Result<(WriteResult, Option<Caller>), StorageError> {
    let (caller, writes) = authenticate(core, ctx, request, txn);
    apply(txn, &writes, changed)?;
    let caller = match caller {
        Ok(caller) => caller,
        Err(error) => return Ok((Err(error), None)),
    };

    let (result, writes) = dispatch(core, ctx, request, caller.as_ref(), txn);
    if result.is_ok() {
        apply(txn, &writes, changed)?;
    }
    Ok((
        result.map_err(|error| unexpected_read_only(core, error)),
        caller,
    ))
}

fn authenticate(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &dyn Transaction,
) -> (Result<Option<Caller>, Error>, WriteSet) {
    let mut overlay = Overlay::new(txn);
    let caller = core.authenticate(ctx, request, &mut overlay);
    (caller, overlay.into_writes())
}

fn dispatch(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &dyn Transaction,
) -> (WriteResult, WriteSet) {
    let mut overlay = Overlay::new(txn);
    let result = core.dispatch(ctx, request, caller, &mut overlay);
    (result, overlay.into_writes())
}

fn apply(
    txn: &mut dyn Transaction,
    writes: &WriteSet,
    changed: &mut BTreeSet<(Partition, String)>,
) -> Result<(), StorageError> {
    apply_writes(txn, writes)?;
    changed.extend(writes.keys().cloned());
    Ok(())
}

/// The writer's transaction is writable everywhere, so a read-only error here is a bug in the
/// handler, unless it is a secondary's write to replicated data, which the node forwards.
fn unexpected_read_only(core: &Core, error: Error) -> Error {
    if core.is_forward(&error) {
        return error;
    }
    match error {
        Error::Storage(StorageError::ReadOnly { partition }) => Error::internal(format!(
            "a write to the {} partition was rejected on the writer",
            partition.name()
        )),
        other => other,
    }
}

fn reload<S: Storage>(core: &Core, storage: &S, changed: BTreeSet<(Partition, String)>) {
    if changed.is_empty() {
        return;
    }
    let changed: Vec<(Partition, String)> = changed.into_iter().collect();
    let reloaded = storage.read(|txn| core.reload(txn, Some(&changed)));
    match reloaded {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "failed to reload caches after a commit"),
        Err(error) => tracing::error!(%error, "failed to open a read transaction for reload"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc::{Receiver, Sender};

    use coffer_core::CoreConfig;
    use coffer_core::request::Operation;
    use coffer_core::storage::MemStorage;

    use super::*;
    use crate::server::environment::SystemEnvironment;
    use crate::server::storage::LmdbStorage;

    /// Storage that counts commits and can hold the first write until the test releases it.
    struct Gated<S> {
        inner: S,
        commits: AtomicUsize,
        entered: Mutex<Sender<()>>,
        release: Mutex<Receiver<()>>,
    }

    impl<S: Storage> Storage for Gated<S> {
        fn read<R>(&self, body: impl FnOnce(&dyn Transaction) -> R) -> Result<R, StorageError> {
            self.inner.read(body)
        }

        fn write<R, E>(
            &self,
            body: impl FnOnce(&mut dyn Transaction) -> Result<R, E>,
        ) -> Result<R, E>
        where
            E: From<StorageError>,
        {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self.release.lock().unwrap().recv();
            let result = self.inner.write(body);
            self.commits.fetch_add(1, Ordering::SeqCst);
            result
        }
    }

    struct Harness<S> {
        storage: Arc<Gated<S>>,
        writer: Writer,
        entered: Receiver<()>,
        release: Sender<()>,
    }

    fn harness<S: Storage + 'static>(inner: S, limits: WriterLimits) -> Harness<S> {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let storage = Arc::new(Gated {
            inner,
            commits: AtomicUsize::new(0),
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        });
        let core = Arc::new(Core::new(CoreConfig::default()));
        let writer = Writer::spawn(
            core,
            Arc::clone(&storage),
            Arc::new(SystemEnvironment),
            limits,
        )
        .unwrap();
        Harness {
            storage,
            writer,
            entered,
            release,
        }
    }

    fn request() -> Request {
        Request::new(Operation::Update, "secret/foo")
    }

    /// Submits one request and waits until the writer is blocked inside `write` with it.
    fn occupy_writer<S>(harness: &Harness<S>) -> oneshot::Receiver<Written> {
        let receiver = harness.writer.submit(request()).unwrap();
        harness.entered.recv().unwrap();
        receiver
    }

    fn release_all<S>(harness: &Harness<S>) {
        for _ in 0..64 {
            let _ = harness.release.send(());
        }
    }

    #[test]
    fn queued_requests_share_one_commit() {
        let limits = WriterLimits {
            queue_length: 16,
            batch_size: 16,
            ..WriterLimits::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let harness = harness(LmdbStorage::open(dir.path(), 1 << 20).unwrap(), limits);
        let first = occupy_writer(&harness);
        let queued: Vec<_> = (0..10)
            .map(|_| harness.writer.submit(request()).unwrap())
            .collect();
        release_all(&harness);

        assert!(first.blocking_recv().is_ok());
        for receiver in queued {
            assert!(receiver.blocking_recv().is_ok());
        }
        assert_eq!(harness.storage.commits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn batch_size_caps_one_commit() {
        let limits = WriterLimits {
            queue_length: 16,
            batch_size: 4,
            ..WriterLimits::default()
        };
        let harness = harness(MemStorage::new(), limits);
        let first = occupy_writer(&harness);
        let queued: Vec<_> = (0..8)
            .map(|_| harness.writer.submit(request()).unwrap())
            .collect();
        release_all(&harness);

        assert!(first.blocking_recv().is_ok());
        for receiver in queued {
            assert!(receiver.blocking_recv().is_ok());
        }
        assert_eq!(harness.storage.commits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn batch_bytes_cap_one_commit() {
        let limits = WriterLimits {
            queue_length: 16,
            batch_size: 16,
            batch_bytes: 1000,
            ..WriterLimits::default()
        };
        let harness = harness(MemStorage::new(), limits);
        let first = occupy_writer(&harness);
        let mut large = request();
        large
            .data
            .insert("value".into(), serde_json::Value::String("x".repeat(600)));
        let queued: Vec<_> = (0..4)
            .map(|_| harness.writer.submit(large.clone()).unwrap())
            .collect();
        release_all(&harness);

        assert!(first.blocking_recv().is_ok());
        for receiver in queued {
            assert!(receiver.blocking_recv().is_ok());
        }
        // Two requests of about 600 bytes pass the 1000-byte cap, so four take two commits.
        assert_eq!(harness.storage.commits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn full_queue_rejects_with_503() {
        let limits = WriterLimits {
            queue_length: 2,
            batch_size: 8,
            ..WriterLimits::default()
        };
        let harness = harness(MemStorage::new(), limits);
        let _first = occupy_writer(&harness);
        let _queued: Vec<_> = (0..2)
            .map(|_| harness.writer.submit(request()).unwrap())
            .collect();

        let error = harness.writer.submit(request()).unwrap_err();
        assert_eq!(error.status(), 503);
        assert!(error.to_string().contains("write queue is full"), "{error}");
        release_all(&harness);
    }

    #[test]
    fn inline_writer_commits_each_request() {
        let storage = Arc::new(MemStorage::new());
        let core = Arc::new(Core::new(CoreConfig::default()));
        let writer = Writer::inline(
            core,
            storage,
            Arc::new(SystemEnvironment),
            WriterLimits::default(),
        );
        let mut receiver = writer.submit(request()).unwrap();
        // The result is ready before `submit` returns.
        let result = receiver.try_recv().unwrap();
        assert_eq!(result.result.unwrap_err().status(), 503);

        writer.close();
        let error = writer.submit(request()).unwrap_err();
        assert!(error.to_string().contains("shutting down"), "{error}");
    }

    #[test]
    fn published_entry_reaches_shipper_and_watchers() {
        use coffer_core::replication::position::{Epoch, Position};
        use coffer_core::replication::wal::Op;

        let feed = CommitFeed::new(2, usize::MAX);
        let mut head = feed.subscribe();
        let epoch = Epoch::new(1, "c");
        let mut position = Position::genesis(epoch.clone());
        for _ in 0..3 {
            let op = Op::Delete { key: "k".into() };
            let entry = Entry::next(&position, epoch.clone(), vec![op]);
            position = entry.position();
            feed.publish(entry);
        }

        assert!(head.has_changed().unwrap());
        assert_eq!(*head.borrow_and_update(), 3);
        assert_eq!(feed.head(), 3);
        let shipper = feed.shipper().lock().unwrap();
        assert_eq!(shipper.len(), 2, "the shipper keeps its bound");
        assert_eq!(shipper.get(3).map(|entry| entry.hash), Some(position.hash));
    }

    #[test]
    fn close_commits_queued_requests() {
        let harness = harness(MemStorage::new(), WriterLimits::default());
        let first = occupy_writer(&harness);
        let queued = harness.writer.submit(request()).unwrap();
        release_all(&harness);
        harness.writer.close();

        assert!(first.blocking_recv().is_ok());
        assert!(queued.blocking_recv().is_ok());
        let error = harness.writer.submit(request()).unwrap_err();
        assert_eq!(error.status(), 503);
    }
}
