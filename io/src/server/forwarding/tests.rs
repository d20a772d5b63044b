//! Forwarding over real rustls on loopback, between a forwarding client and a primary node's
//! cluster listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::forwarding::{
    ForwardMessage, ForwardedAnswer, ForwardedIdentity, ForwardedRequest, ForwardedResult,
};
use coffer_core::replication::frame::{FrameDecoder, FrameLimits, encode_payload};
use coffer_core::request::{Operation, Request, Response};
use coffer_core::storage::MemStorage;
use coffer_core::{Core, CoreConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

use super::*;
use crate::server::cluster::tls::testing::{TestCluster, TestSecondary};
use crate::server::cluster::{ClusterLimits, ClusterPeer, ReplicationHandler, serve_cluster};
use crate::server::environment::SystemEnvironment;
use crate::server::net::{Network, Stream, TokioNetwork};
use crate::server::node::Node;
use crate::server::writer::WriterLimits;

type TestNode = Node<MemStorage, SystemEnvironment>;

fn frames() -> FrameLimits {
    FrameLimits {
        max_frame_payload: 64 * 1024,
        max_message_size: 1024 * 1024,
    }
}

/// Serves only forwarding, with `executor`.
struct ForwardingOnly<X> {
    executor: Arc<X>,
}

impl<X: ForwardExecutor> ReplicationHandler for ForwardingOnly<X> {
    async fn serve<S: Stream>(&self, _stream: TlsStream<S>, _peer: ClusterPeer) {}

    async fn serve_forwarding<S: Stream>(&self, stream: TlsStream<S>, peer: ClusterPeer) {
        let limits = ForwardingLimits {
            frames: frames(),
            max_in_flight: 8,
        };
        let executor = Arc::clone(&self.executor);
        serve_forwarding(stream, peer.secondary.secondary_id, executor, limits).await;
    }
}

/// A cluster listener on loopback that serves only forwarding, until `stop` is sent.
struct Listening {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn listen<X: ForwardExecutor>(cluster: &TestCluster, executor: Arc<X>) -> Listening {
    let listener = TokioNetwork
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = crate::server::net::Listener::local_addr(&listener).unwrap();
    let handler = Arc::new(ForwardingOnly { executor });
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let acceptor = Arc::new(cluster.acceptor());
    let limits = ClusterLimits {
        handshake_timeout: Duration::from_secs(5),
        ..ClusterLimits::default()
    };
    let task = tokio::spawn(serve_cluster(listener, acceptor, handler, limits, shutdown));
    Listening { addr, stop, task }
}

struct Primary {
    node: Arc<TestNode>,
    root: String,
    cluster: TestCluster,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Primary {
    async fn start(seed: u64) -> Primary {
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
        let mount = Request::new(Operation::Update, "sys/mounts/secret")
            .with_data(json!({"type": "kv-v2"}))
            .with_token(root.clone());
        node.execute(mount).await.result.unwrap();

        let cluster = TestCluster::new(seed);
        let executor = Arc::new(NodeExecutor(Arc::clone(&node)));
        let Listening { addr, stop, task } = listen(&cluster, executor).await;
        Primary {
            node,
            root,
            cluster,
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn client(&self, secondary: &TestSecondary) -> ForwardClient<TokioNetwork> {
        let limits = ClientLimits {
            frames: frames(),
            deadline: Duration::from_secs(3),
            backoff: Duration::from_millis(50),
            ..ClientLimits::default()
        };
        ForwardClient::new(TokioNetwork, secondary.connector(), vec![self.addr], limits)
    }

    async fn read(&self, path: &str) -> Value {
        let request = Request::new(Operation::Read, path).with_token(self.root.clone());
        let Ok(Response::Logical(logical)) = self.node.execute(request).await.result else {
            panic!("reading {path} failed");
        };
        Value::Object(logical.data.unwrap())
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
        self.node.shutdown();
    }
}

async fn unseal(node: &TestNode) -> String {
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

fn kv_put(id: &str, policies: &[&str]) -> ForwardedRequest {
    ForwardedRequest {
        request_id: id.to_owned(),
        operation: Operation::Update,
        path: "secret/data/app".to_owned(),
        data_json: json!({"data": {"password": "p-1"}}).to_string(),
        identity: ForwardedIdentity {
            accessor: "accessor-east".to_owned(),
            policies: policies.iter().map(|policy| (*policy).to_owned()).collect(),
            display_name: "token-alice".to_owned(),
            token_path: "auth/token/create".to_owned(),
        },
    }
}

fn version_of(answer: &ForwardedAnswer) -> u64 {
    let ForwardedResult::Logical { data_json, .. } = &answer.result else {
        panic!("expected an envelope, got {:?}", answer.result);
    };
    let data: Value = serde_json::from_str(data_json.as_deref().unwrap()).unwrap();
    data["version"].as_u64().unwrap()
}

fn error_status(answer: &ForwardedAnswer) -> u16 {
    match &answer.result {
        ForwardedResult::Error { status, .. } => *status,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn forward_from_valid_certificate_applies() {
    let mut primary = Primary::start(301).await;
    let east = primary.cluster.secondary("east");
    let client = primary.client(&east);

    let answer = client.send(kv_put("req-1", &["root"])).await.unwrap();
    assert_eq!(answer.request_id, "req-1");
    assert_eq!(version_of(&answer), 1);
    let position = answer.position.expect("a write returns its WAL position");
    assert!(position.index > 0);

    let stored = primary.read("secret/data/app").await;
    assert_eq!(stored["data"]["password"], "p-1");
    primary.stop().await;
}

#[tokio::test]
async fn retried_request_id_applies_once() {
    let mut primary = Primary::start(302).await;
    let east = primary.cluster.secondary("east");
    let client = primary.client(&east);

    let first = client.send(kv_put("req-1", &["root"])).await.unwrap();
    let second = client.send(kv_put("req-1", &["root"])).await.unwrap();
    let third = primary
        .client(&east)
        .send(kv_put("req-1", &["root"]))
        .await
        .unwrap();
    assert_eq!(first.result, second.result);
    assert_eq!(first.result, third.result);

    let metadata = primary.read("secret/metadata/app").await;
    assert_eq!(metadata["current_version"], 1, "the write applied once");
    primary.stop().await;
}

#[tokio::test]
async fn revoked_certificate_cannot_forward() {
    let mut primary = Primary::start(303).await;
    let east = primary.cluster.secondary("east");
    primary.cluster.active.replace([]);
    let client = primary.client(&east);

    let error = client.send(kv_put("req-1", &["root"])).await.unwrap_err();
    assert_eq!(error.status(), 503);
    let message = error.to_string();
    assert!(message.contains(&primary.addr.to_string()), "{message}");
    assert!(message.contains("TLS handshake"), "{message}");
    let metadata =
        Request::new(Operation::Read, "secret/metadata/app").with_token(primary.root.clone());
    let read = primary.node.execute(metadata).await.result;
    assert_eq!(read.unwrap_err().status(), 404, "nothing was written");
    primary.stop().await;
}

#[tokio::test]
async fn claimed_policy_without_grant_is_denied() {
    let mut primary = Primary::start(304).await;
    let policy = Request::new(Operation::Update, "sys/policy/reader")
        .with_data(json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"}))
        .with_token(primary.root.clone());
    primary.node.execute(policy).await.result.unwrap();
    let east = primary.cluster.secondary("east");
    let client = primary.client(&east);

    let reader = client.send(kv_put("req-1", &["reader"])).await.unwrap();
    assert_eq!(error_status(&reader), 403);
    assert_eq!(reader.position, None);
    let unknown = client
        .send(kv_put("req-2", &["only-on-east"]))
        .await
        .unwrap();
    assert_eq!(error_status(&unknown), 403);
    primary.stop().await;
}

#[tokio::test]
async fn unreachable_primary_gives_503_naming_it() {
    let listener = TokioNetwork
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = crate::server::net::Listener::local_addr(&listener).unwrap();
    drop(listener);
    let mut cluster = TestCluster::new(305);
    let east = cluster.secondary("east");
    let limits = ClientLimits {
        frames: frames(),
        deadline: Duration::from_secs(3),
        backoff: Duration::from_millis(50),
        ..ClientLimits::default()
    };
    let client = ForwardClient::new(TokioNetwork, east.connector(), vec![addr], limits);

    let started = tokio::time::Instant::now();
    let error = client.send(kv_put("req-1", &["root"])).await.unwrap_err();
    assert_eq!(error.status(), 503);
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    assert!(error.to_string().contains("connecting failed"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Blocks every request until released, counting the ones it started.
struct Gate {
    release: Notify,
    started: std::sync::atomic::AtomicUsize,
}

impl ForwardExecutor for Gate {
    async fn execute(&self, _secondary_id: &str, request: ForwardedRequest) -> ForwardedAnswer {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.release.notified().await;
        ForwardedAnswer {
            request_id: request.request_id,
            result: ForwardedResult::NoContent,
            position: None,
        }
    }
}

async fn read_answer(
    stream: &mut (impl AsyncReadExt + Unpin),
    decoder: &mut FrameDecoder,
) -> ForwardedAnswer {
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(ForwardMessage::Answer(answer)) = decoder.poll_payload().unwrap() {
            return answer;
        }
        let count = stream.read(&mut buffer).await.unwrap();
        assert!(count > 0, "the server closed the connection");
        decoder.push(&buffer[..count]);
    }
}

#[tokio::test]
async fn server_bounds_requests_in_flight() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let gate = Arc::new(Gate {
        release: Notify::new(),
        started: std::sync::atomic::AtomicUsize::new(0),
    });
    let limits = ForwardingLimits {
        frames: frames(),
        max_in_flight: 2,
    };
    let serving = tokio::spawn(serve_forwarding(
        server,
        "east".to_owned(),
        Arc::clone(&gate),
        limits,
    ));

    for id in ["a", "b", "c"] {
        let message = ForwardMessage::Request(kv_put(id, &["root"]));
        for frame in encode_payload(&message, frames()).unwrap() {
            client.write_all(&frame).await.unwrap();
        }
    }
    let mut decoder = FrameDecoder::new(frames());
    let rejected = read_answer(&mut client, &mut decoder).await;
    assert_eq!(rejected.request_id, "c");
    assert_eq!(error_status(&rejected), 503);
    let both_started = async {
        while gate.started.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), both_started)
        .await
        .expect("the two requests within the bound start");
    assert_eq!(gate.started.load(std::sync::atomic::Ordering::SeqCst), 2);

    gate.release.notify_waiters();
    let mut finished = vec![
        read_answer(&mut client, &mut decoder).await.request_id,
        read_answer(&mut client, &mut decoder).await.request_id,
    ];
    finished.sort();
    assert_eq!(finished, ["a", "b"]);
    drop(client);
    let reason = serving.await.unwrap();
    assert!(reason.contains("closed"), "{reason}");
}

/// Never responds to the first request it gets, and responds to every later one at once.
#[derive(Default)]
struct SilentOnce {
    calls: std::sync::atomic::AtomicUsize,
}

impl ForwardExecutor for SilentOnce {
    async fn execute(&self, _secondary_id: &str, request: ForwardedRequest) -> ForwardedAnswer {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if call == 0 {
            std::future::pending::<()>().await;
        }
        ForwardedAnswer {
            request_id: request.request_id,
            result: ForwardedResult::NoContent,
            position: None,
        }
    }
}

#[tokio::test]
async fn silent_attempt_is_retried_on_new_connection() {
    let mut cluster = TestCluster::new(306);
    let east = cluster.secondary("east");
    let executor = Arc::new(SilentOnce::default());
    let listening = listen(&cluster, Arc::clone(&executor)).await;
    let limits = ClientLimits {
        frames: frames(),
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_millis(300),
        backoff: Duration::from_millis(50),
        ..ClientLimits::default()
    };
    let client = ForwardClient::new(TokioNetwork, east.connector(), vec![listening.addr], limits);

    let started = tokio::time::Instant::now();
    let answer = client.send(kv_put("req-1", &["root"])).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(answer.request_id, "req-1");
    assert_eq!(answer.result, ForwardedResult::NoContent);
    assert_eq!(
        executor.calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the request was sent once more, on a new connection"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let next = client.send(kv_put("req-2", &["root"])).await.unwrap();
    assert_eq!(next.request_id, "req-2");
    let _ = listening.stop.send(());
    listening.task.await.unwrap();
}

/// Responds to every request after `delay`, counting the requests.
struct Slow {
    delay: Duration,
    calls: std::sync::atomic::AtomicUsize,
}

impl ForwardExecutor for Slow {
    async fn execute(&self, _secondary_id: &str, request: ForwardedRequest) -> ForwardedAnswer {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        ForwardedAnswer {
            request_id: request.request_id,
            result: ForwardedResult::NoContent,
            position: None,
        }
    }
}

#[tokio::test]
async fn slot_wait_is_not_an_attempt_timeout() {
    let mut cluster = TestCluster::new(307);
    let east = cluster.secondary("east");
    let executor = Arc::new(Slow {
        delay: Duration::from_millis(200),
        calls: std::sync::atomic::AtomicUsize::new(0),
    });
    let listening = listen(&cluster, Arc::clone(&executor)).await;
    let limits = ClientLimits {
        frames: frames(),
        max_in_flight: 1,
        deadline: Duration::from_secs(3),
        attempt_timeout: Duration::from_millis(300),
        backoff: Duration::from_millis(50),
        ..ClientLimits::default()
    };
    let client = ForwardClient::new(TokioNetwork, east.connector(), vec![listening.addr], limits);

    // The second request waits about 200 ms for the only slot, then 200 ms for its response.
    let (first, second) = tokio::join!(
        client.send(kv_put("req-1", &["root"])),
        client.send(kv_put("req-2", &["root"])),
    );
    assert_eq!(first.unwrap().request_id, "req-1");
    assert_eq!(second.unwrap().request_id, "req-2");
    assert_eq!(
        executor.calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "a request was sent again"
    );
    let _ = listening.stop.send(());
    listening.task.await.unwrap();
}
