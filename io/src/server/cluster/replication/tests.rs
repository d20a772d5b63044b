//! End-to-end tests of the drivers: a real primary node with its writer, a secondary over its
//! own storage, and in-memory pipes between them.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use coffer_core::replication::config::ReplicationConfig;
use coffer_core::replication::frame::{FrameDecoder, FrameLimits};
use coffer_core::replication::keys::KeyOffer;
use coffer_core::replication::merkle::Merkle;
use coffer_core::replication::message::Message;
use coffer_core::replication::position::Position;
use coffer_core::replication::role::SECONDARY_RECORD_KEY;
use coffer_core::replication::secondary::SecondaryState;
use coffer_core::replication::wal::Wal;
use coffer_core::request::{Operation, Request, Response};
use coffer_core::storage::{MemStorage, Partition, Storage, StorageError};
use coffer_core::{Core, CoreConfig, Timestamp};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use crate::server::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::server::environment::SystemEnvironment;
use crate::server::node::Node;
use crate::server::storage::{LmdbStorage, PinSnapshot};
use crate::server::writer::WriterLimits;

const CLUSTER: &str = "cluster-test";
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

fn config() -> ReplicationConfig {
    ReplicationConfig {
        heartbeat_interval: Duration::from_millis(50),
        heartbeat_timeout: Duration::from_secs(3),
        reconnect_initial: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        ..ReplicationConfig::default()
    }
}

/// The bytes one connection sent.
type SentBytes = Arc<Mutex<Vec<u8>>>;

/// A stream that copies every byte written through it into a shared buffer.
struct Recorder {
    inner: DuplexStream,
    sent: SentBytes,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(count)) = &result {
            self.sent.lock().unwrap().extend_from_slice(&buf[..*count]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A primary node with an acceptor that serves every dialed pipe with a session.
struct Primary<S: PinSnapshot + 'static> {
    node: Arc<Node<S, SystemEnvironment>>,
    root: String,
    /// Every byte the primary sent, one buffer per connection.
    sent: Arc<Mutex<Vec<SentBytes>>>,
    /// Why each session ended.
    ended: Arc<Mutex<Vec<String>>>,
    dial: mpsc::Sender<DuplexStream>,
    acceptor: JoinHandle<()>,
}

impl<S: PinSnapshot + 'static> Primary<S> {
    async fn start(storage: S, limits: WriterLimits, peer_id: Option<&str>) -> Primary<S> {
        Primary::start_with_keys(storage, limits, peer_id, None).await
    }

    /// Starts a primary whose sessions offer keys when `rekeyed` is given, and again after
    /// each change of it. The offer's sealed root key is the channel's value.
    async fn start_with_keys(
        storage: S,
        limits: WriterLimits,
        peer_id: Option<&str>,
        rekeyed: Option<watch::Receiver<u64>>,
    ) -> Primary<S> {
        let core = Core::new(CoreConfig::default());
        let node = Node::start(core, storage, SystemEnvironment, limits).unwrap();
        let node = Arc::new(node);
        let root = unseal(&node).await;
        let mount = Request::new(Operation::Update, "sys/mounts/kv")
            .with_data(json!({"type": "kv"}))
            .with_token(root.clone());
        node.execute(mount).await.result.unwrap();

        let (dial, mut accepted) = mpsc::channel::<DuplexStream>(4);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let params = SessionParams {
            config: config(),
            cluster_id: CLUSTER.into(),
            epoch: head(&*node.storage_handle()).epoch,
            peer_id: peer_id.map(str::to_owned),
        };
        let acceptor = {
            let node = Arc::clone(&node);
            let sent = Arc::clone(&sent);
            let ended = Arc::clone(&ended);
            tokio::spawn(async move {
                while let Some(stream) = accepted.recv().await {
                    let buffer = Arc::new(Mutex::new(Vec::new()));
                    sent.lock().unwrap().push(Arc::clone(&buffer));
                    let stream = Recorder {
                        inner: stream,
                        sent: buffer,
                    };
                    let hooks = SessionHooks {
                        keys: rekeyed.clone().map(test_keys),
                        ..SessionHooks::default()
                    };
                    let session = serve_session(
                        stream,
                        node.storage_handle(),
                        node.commit_feed().clone(),
                        params.clone(),
                        Clock::new(Timestamp::from_secs(1_000)),
                        hooks,
                    );
                    let ended = Arc::clone(&ended);
                    tokio::spawn(async move {
                        let reason = session.await;
                        ended.lock().unwrap().push(reason);
                    });
                }
            })
        };
        Primary {
            node,
            root,
            sent,
            ended,
            dial,
            acceptor,
        }
    }

    fn dialer(&self) -> impl Dialer<Stream = DuplexStream> + Clone {
        let dial = self.dial.clone();
        move || {
            let dial = dial.clone();
            async move {
                let (near, far) = tokio::io::duplex(64 * 1024);
                dial.send(far)
                    .await
                    .map_err(|_| std::io::Error::other("the primary stopped accepting"))?;
                Ok(near)
            }
        }
    }

    async fn put(&self, key: &str, value: &str) {
        let request = Request::new(Operation::Update, format!("kv/{key}"))
            .with_data(json!({ "value": value }))
            .with_token(self.root.clone());
        self.node.execute(request).await.result.unwrap();
    }

    async fn delete(&self, key: &str) {
        let request =
            Request::new(Operation::Delete, format!("kv/{key}")).with_token(self.root.clone());
        self.node.execute(request).await.result.unwrap();
    }

    fn storage(&self) -> &S {
        self.node.storage()
    }

    /// Decodes every message the primary sent.
    fn messages(&self) -> Vec<Message> {
        let limits = FrameLimits {
            max_frame_payload: config().max_frame_payload,
            max_message_size: config().max_message_size,
        };
        let mut messages = Vec::new();
        for buffer in self.sent.lock().unwrap().iter() {
            let mut decoder = FrameDecoder::new(limits);
            decoder.push(&buffer.lock().unwrap());
            while let Some(message) = decoder.poll_message().unwrap() {
                messages.push(message);
            }
        }
        messages
    }

    fn stop(self) {
        self.acceptor.abort();
        self.node.shutdown();
    }
}

/// Returns keys whose offer carries the rekey channel's value as its sealed root key.
fn test_keys(rekeyed: watch::Receiver<u64>) -> SessionKeys {
    let generation = rekeyed.clone();
    SessionKeys {
        public_key: [7; 32],
        offer: Box::new(move |public_key| {
            assert_eq!(public_key, &[7; 32]);
            Ok(test_offer(*generation.borrow()))
        }),
        rekeyed: Some(rekeyed),
    }
}

fn test_offer(generation: u64) -> KeyOffer {
    KeyOffer {
        ephemeral_public: [1; 32],
        nonce: [2; 12],
        sealed_root_key: generation.to_be_bytes().to_vec(),
        keyring: b"keyring".to_vec(),
        seal_config: b"seal-config".to_vec(),
    }
}

/// Initialises and unseals `node` with one key share and returns the root token.
async fn unseal<S: Storage + 'static>(node: &Node<S, SystemEnvironment>) -> String {
    let init = Request::new(Operation::Update, "sys/init")
        .with_data(json!({"secret_shares": 1, "secret_threshold": 1}));
    let Ok(Response::Raw { body, .. }) = node.execute(init).await.result else {
        panic!("sys/init returns a raw body");
    };
    let key = body["keys"][0].as_str().unwrap().to_owned();
    let unseal = Request::new(Operation::Update, "sys/unseal").with_data(json!({"key": key}));
    node.execute(unseal).await.result.unwrap();
    body["root_token"].as_str().unwrap().to_owned()
}

/// A running secondary and the states it went through.
struct SecondaryTask {
    states: Arc<Mutex<Vec<SecondaryState>>>,
    offers: Arc<Mutex<Vec<KeyOffer>>>,
    task: JoinHandle<Result<std::convert::Infallible, StorageError>>,
}

impl SecondaryTask {
    fn start<S: Storage + 'static>(
        storage: Arc<S>,
        dialer: impl Dialer,
        secondary_id: &str,
    ) -> SecondaryTask {
        let states = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&states);
        let offers = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::clone(&offers);
        let hooks = SecondaryHooks {
            on_status: Box::new(move |status: &SecondaryStatus| {
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&status.state) {
                    seen.push(status.state);
                }
            }),
            on_key_offer: Box::new(move |offer| {
                received.lock().unwrap().push(offer);
                Ok(())
            }),
        };
        let params = SecondaryParams {
            config: config(),
            cluster_id: CLUSTER.into(),
            secondary_id: secondary_id.into(),
            epoch_fence: 0,
        };
        // The driver applies data only while the node has a secondary record; its content
        // is not read.
        storage
            .write(|txn| txn.put(Partition::Local, SECONDARY_RECORD_KEY, b"record"))
            .unwrap();
        let core = Arc::new(Core::new(CoreConfig::default()));
        let task = tokio::spawn(run_secondary(
            storage,
            core,
            dialer,
            params,
            Clock::new(Timestamp::from_secs(5_000)),
            hooks,
        ));
        SecondaryTask {
            states,
            offers,
            task,
        }
    }

    fn states(&self) -> Vec<SecondaryState> {
        self.states.lock().unwrap().clone()
    }

    /// Stops the secondary and waits until its task has dropped the storage.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn dump<S: Storage>(storage: &S, partition: Partition) -> Vec<(String, Vec<u8>)> {
    storage
        .read(|txn| {
            let keys = txn.scan(partition, "", None, None).unwrap();
            keys.into_iter()
                .map(|key| {
                    let value = txn.get(partition, &key).unwrap().unwrap();
                    (key, value)
                })
                .collect::<Vec<_>>()
        })
        .unwrap()
}

fn head<S: Storage>(storage: &S) -> Position {
    storage.read(|txn| Wal::head(txn)).unwrap().unwrap()
}

fn root<S: Storage>(storage: &S) -> [u8; 32] {
    storage.read(|txn| Merkle::root(txn)).unwrap().unwrap()
}

fn in_step<P: Storage, S: Storage>(primary: &P, secondary: &S) -> bool {
    head(primary) == head(secondary)
        && root(primary) == root(secondary)
        && dump(primary, Partition::Shared) == dump(secondary, Partition::Shared)
}

/// Waits until the secondary has the primary's head, root and shared data.
async fn converge<P: Storage, S: Storage>(primary: &P, secondary: &S) {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while !in_step(primary, secondary) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secondary did not reach {} within {CONVERGE_TIMEOUT:?}; it is at {}",
            head(primary),
            head(secondary)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the secondary reports `state` as its latest state.
async fn wait_for_state(secondary: &SecondaryTask, state: SecondaryState) {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while secondary.states().last() != Some(&state) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the secondary never reached {}; its states: {:?}",
            state.name(),
            secondary.states()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns every key a message carries.
fn keys_of(message: &Message) -> Vec<String> {
    match message {
        Message::WalBatch { entries } => entries
            .iter()
            .flat_map(|entry| entry.ops.iter().map(|op| op.key().to_owned()))
            .collect(),
        Message::KeyValues { values, .. } => values.iter().map(|(key, _)| key.clone()).collect(),
        Message::BucketResponse { buckets, .. } => buckets
            .iter()
            .flat_map(|(_, delta)| delta.missing.iter().map(|(key, _)| key.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_writes_reach_the_secondary() {
    let primary = Primary::start(MemStorage::new(), WriterLimits::default(), None).await;
    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    wait_for_state(&secondary, SecondaryState::StreamWals).await;

    for number in 0..1_000 {
        primary
            .put(&format!("key-{number}"), &format!("value-{number}"))
            .await;
    }
    converge(primary.storage(), &*storage).await;

    assert!(head(&*storage).index > 1_000);
    let states = secondary.states();
    assert!(!states.contains(&SecondaryState::MerkleSync), "{states:?}");
    secondary.stop().await;
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_node_applies_nothing_more() {
    let primary = Primary::start(MemStorage::new(), WriterLimits::default(), None).await;
    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    wait_for_state(&secondary, SecondaryState::StreamWals).await;
    primary.put("before", "1").await;
    converge(primary.storage(), &*storage).await;

    // A promotion deletes the record in its own commit; the driver may still be running.
    storage
        .write(|txn| txn.delete(Partition::Local, SECONDARY_RECORD_KEY))
        .unwrap();
    let applied = head(&*storage);
    primary.put("after", "2").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(head(&*storage), applied);
    let shared = dump(&*storage, Partition::Shared);
    assert!(shared.iter().any(|(key, _)| key.ends_with("/before")));
    assert!(!shared.iter().any(|(key, _)| key.ends_with("/after")));
    secondary.stop().await;
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_partition_never_crosses() {
    let primary = Primary::start(MemStorage::new(), WriterLimits::default(), None).await;
    let marker = b"local-marker-that-must-stay-on-the-primary";
    primary
        .storage()
        .write(|txn| txn.put(Partition::Local, "marker", marker))
        .unwrap();
    for number in 0..20 {
        primary.put(&format!("key-{number}"), "value").await;
    }
    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    converge(primary.storage(), &*storage).await;
    secondary.stop().await;

    let local = dump(primary.storage(), Partition::Local);
    assert!(
        local.len() > 1,
        "the node wrote tokens to the local partition"
    );
    let local_keys: BTreeSet<&str> = local.iter().map(|(key, _)| key.as_str()).collect();
    let messages = primary.messages();
    assert!(
        messages
            .iter()
            .any(|message| matches!(message, Message::WalBatch { .. }))
    );
    for message in &messages {
        for key in keys_of(message) {
            assert!(
                !local_keys.contains(key.as_str()),
                "local key {key:?} was sent"
            );
        }
    }
    let sent: Vec<u8> = primary
        .sent
        .lock()
        .unwrap()
        .iter()
        .flat_map(|buffer| buffer.lock().unwrap().clone())
        .collect();
    let marker_sent = sent.windows(marker.len()).any(|window| window == marker);
    assert!(!marker_sent, "the local marker was sent");
    // Short values such as counters would match by chance.
    for (key, value) in local.iter().filter(|(_, value)| value.len() >= 32) {
        let found = sent
            .windows(value.len())
            .any(|window| window == value.as_slice());
        assert!(!found, "the value of local key {key:?} was sent");
    }
    let local_keys: Vec<String> = dump(&*storage, Partition::Local)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(local_keys, vec![SECONDARY_RECORD_KEY.to_owned()]);
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_secondary_resumes_by_streaming() {
    let primary_dir = tempfile::tempdir().unwrap();
    let secondary_dir = tempfile::tempdir().unwrap();
    let primary_storage = LmdbStorage::open(primary_dir.path(), 64 << 20).unwrap();
    let primary = Primary::start(primary_storage, WriterLimits::default(), None).await;
    let storage = Arc::new(LmdbStorage::open(secondary_dir.path(), 64 << 20).unwrap());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    for number in 0..50 {
        primary.put(&format!("key-{number}"), "first").await;
    }
    converge(primary.storage(), &*storage).await;
    secondary.stop().await;

    // Restart: close the environment and open it again, then run a new machine over it.
    let storage = Arc::into_inner(storage).expect("the stopped secondary released its storage");
    storage.close();
    for number in 0..50 {
        primary.put(&format!("key-{number}"), "second").await;
    }
    let storage = Arc::new(LmdbStorage::open(secondary_dir.path(), 64 << 20).unwrap());
    let before = head(&*storage);
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    converge(primary.storage(), &*storage).await;

    let states = secondary.states();
    assert!(before.index > 0, "the secondary kept its position");
    assert_eq!(states.last(), Some(&SecondaryState::StreamWals));
    assert!(!states.contains(&SecondaryState::MerkleDiff), "{states:?}");
    assert!(!states.contains(&SecondaryState::MerkleSync), "{states:?}");
    secondary.stop().await;
    primary.stop();
}

/// Lets a secondary fall behind the shipper and the WAL, then checks it catches up by a
/// Merkle diff and sync against the primary's pinned snapshot, and streams afterwards.
async fn catch_up_by_merkle_sync<P, S>(primary_storage: P, storage: Arc<S>)
where
    P: PinSnapshot + 'static,
    S: Storage + 'static,
{
    let limits = WriterLimits {
        wal_retain: 8,
        logshipper_buffer_length: 8,
        ..WriterLimits::default()
    };
    let primary = Primary::start(primary_storage, limits, None).await;
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    for number in 0..20 {
        primary.put(&format!("key-{number}"), "first").await;
    }
    converge(primary.storage(), &*storage).await;
    secondary.stop().await;

    // Past the shipper's and the WAL's bounds: the entries the secondary needs are gone.
    for number in 0..100 {
        primary.put(&format!("key-{number}"), "second").await;
    }
    for number in 0..10 {
        primary.delete(&format!("key-{number}")).await;
    }
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    converge(primary.storage(), &*storage).await;
    wait_for_state(&secondary, SecondaryState::StreamWals).await;

    let states = secondary.states();
    let diff = states
        .iter()
        .position(|state| *state == SecondaryState::MerkleDiff);
    let sync = states
        .iter()
        .position(|state| *state == SecondaryState::MerkleSync);
    assert!(diff.is_some(), "{states:?}");
    assert!(sync > diff, "{states:?}");
    assert_eq!(states.last(), Some(&SecondaryState::StreamWals));

    // Streaming resumes after the sync.
    primary.put("after-sync", "value").await;
    converge(primary.storage(), &*storage).await;
    secondary.stop().await;
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_secondary_catches_up_by_merkle_sync() {
    catch_up_by_merkle_sync(MemStorage::new(), Arc::new(MemStorage::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_lmdb_secondary_catches_up_by_merkle_sync() {
    let primary_dir = tempfile::tempdir().unwrap();
    let secondary_dir = tempfile::tempdir().unwrap();
    let primary = LmdbStorage::open(primary_dir.path(), 64 << 20).unwrap();
    let secondary = LmdbStorage::open(secondary_dir.path(), 64 << 20).unwrap();
    catch_up_by_merkle_sync(primary, Arc::new(secondary)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_rejects_hello_with_another_id() {
    let primary = Primary::start(MemStorage::new(), WriterLimits::default(), Some("east")).await;
    primary.put("key", "value").await;
    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "west");

    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while primary.ended.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reason = primary.ended.lock().unwrap()[0].clone();
    assert!(reason.contains("certificate is for east"), "{reason}");
    assert!(dump(&*storage, Partition::Shared).is_empty());
    assert!(
        !primary.messages().iter().any(|message| matches!(
            message,
            Message::StreamStart { .. } | Message::SyncStart { .. }
        )),
        "the session sent nothing before closing"
    );
    secondary.stop().await;
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_offers_reach_the_secondary_first() {
    let (rekey, rekeyed) = watch::channel(1u64);
    let primary = Primary::start_with_keys(
        MemStorage::new(),
        WriterLimits::default(),
        None,
        Some(rekeyed),
    )
    .await;
    primary.put("key", "value").await;
    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    converge(primary.storage(), &*storage).await;
    // A reconnect on a loaded machine repeats the offer, so every offer so far is the first.
    let offers = secondary.offers.lock().unwrap().clone();
    assert!(!offers.is_empty(), "no key offer arrived");
    assert!(offers.iter().all(|offer| *offer == test_offer(1)));

    // The offer precedes the response to the secondary's Hello.
    let messages = primary.messages();
    let offer = messages
        .iter()
        .position(|message| matches!(message, Message::KeyOffer(_)));
    let answer = messages.iter().position(|message| {
        matches!(
            message,
            Message::StreamStart { .. } | Message::SyncStart { .. }
        )
    });
    assert!(offer.is_some(), "no key offer was sent");
    assert!(offer < answer, "the key offer came after the response");

    // A rekey sends the new keys at once.
    rekey.send_replace(2);
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while secondary.offers.lock().unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rekey was never offered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(secondary.offers.lock().unwrap()[1], test_offer(2));
    secondary.stop().await;
    primary.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_replicates_over_loopback_tcp() {
    use crate::server::net::{Network, TokioNetwork};

    let core = Core::new(CoreConfig::default());
    let node = Node::start(
        core,
        MemStorage::new(),
        SystemEnvironment,
        WriterLimits::default(),
    )
    .unwrap();
    let node = Arc::new(node);
    let root = unseal(&node).await;
    let listener = TokioNetwork
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let params = SessionParams {
        config: config(),
        cluster_id: CLUSTER.into(),
        epoch: head(node.storage()).epoch,
        peer_id: None,
    };
    let acceptor = {
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_session(
                    stream,
                    node.storage_handle(),
                    node.commit_feed().clone(),
                    params.clone(),
                    Clock::new(Timestamp::from_secs(1_000)),
                    SessionHooks::default(),
                ));
            }
        })
    };

    let storage = Arc::new(MemStorage::new());
    let dialer = move || TokioNetwork.connect(address);
    let secondary = SecondaryTask::start(Arc::clone(&storage), dialer, "east");
    let mount = Request::new(Operation::Update, "sys/mounts/kv")
        .with_data(json!({"type": "kv"}))
        .with_token(root.clone());
    node.execute(mount).await.result.unwrap();
    for number in 0..50 {
        let request = Request::new(Operation::Update, format!("kv/key-{number}"))
            .with_data(json!({ "value": number }))
            .with_token(root.clone());
        node.execute(request).await.result.unwrap();
    }
    converge(node.storage(), &*storage).await;

    assert!(head(&*storage).index > 50);
    secondary.stop().await;
    acceptor.abort();
    node.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_carry_no_plaintext_secrets() {
    let primary = Primary::start(MemStorage::new(), WriterLimits::default(), None).await;
    let secrets: Vec<String> = (0..20)
        .map(|number| format!("plaintext-secret-{number}-must-never-travel"))
        .collect();
    for (number, secret) in secrets.iter().enumerate() {
        primary.put(&format!("app/{number}"), secret).await;
    }
    let mut tokens = vec![primary.root.clone()];
    for _ in 0..5 {
        let create = Request::new(Operation::Update, "auth/token/create")
            .with_data(json!({"policies": ["default"]}))
            .with_token(primary.root.clone());
        let Ok(Response::Logical(created)) = primary.node.execute(create).await.result else {
            panic!("token create returns an envelope");
        };
        let auth = created.auth.expect("token create returns an auth block");
        tokens.push(auth.client_token.expose().to_owned());
        tokens.push(auth.accessor.clone());
    }
    let cubbyhole = Request::new(Operation::Update, "cubbyhole/private")
        .with_data(json!({"value": "cubbyhole-plaintext-must-stay-local"}))
        .with_token(primary.root.clone());
    primary.node.execute(cubbyhole).await.result.unwrap();

    let storage = Arc::new(MemStorage::new());
    let secondary = SecondaryTask::start(Arc::clone(&storage), primary.dialer(), "east");
    converge(primary.storage(), &*storage).await;
    secondary.stop().await;

    let messages = primary.messages();
    assert!(
        messages.iter().any(|message| matches!(
            message,
            Message::WalBatch { .. } | Message::KeyValues { .. }
        )),
        "the secondary received data"
    );
    let sent: Vec<u8> = primary
        .sent
        .lock()
        .unwrap()
        .iter()
        .flat_map(|buffer| buffer.lock().unwrap().clone())
        .collect();
    let contains = |needle: &str| {
        sent.windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    for secret in &secrets {
        assert!(!contains(secret), "a secret crossed in clear");
    }
    assert!(!contains("cubbyhole-plaintext-must-stay-local"));
    for token in &tokens {
        assert!(!contains(token), "a token or accessor crossed");
    }
    let local_keys: BTreeSet<String> = dump(primary.storage(), Partition::Local)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    for message in &messages {
        for key in keys_of(message) {
            assert!(!local_keys.contains(&key), "local key {key:?} was sent");
        }
    }
    primary.stop();
}
