//! The references each workload is compared with: a minimal hyper server (the HTTP limit),
//! raw fsync'd LMDB commits (the storage limit) and etcd (the peer).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use heed::types::{Bytes as RawBytes, Str};
use heed::{Database, EnvOpenOptions};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::client::{Bound, Call, MakeCall};
use crate::stats::Sample;

/// How long etcd may take to accept requests after it starts.
const ETCD_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Worker threads of the HTTP limit server, as many as a Coffer server has on 2 cores.
const HTTP_LIMIT_THREADS: usize = 2;

/// An HTTP/1.1 server on 127.0.0.1 that returns one stored JSON body to every request, with
/// the same listener settings as Coffer's (`TCP_NODELAY`, keep-alive). It runs on its own
/// runtime, so it does not share threads with the load generator; dropping it stops it.
pub(crate) struct HttpLimit {
    runtime: Runtime,
    address: SocketAddr,
}

impl HttpLimit {
    /// Starts the server returning `body`.
    pub(crate) fn start(body: Bytes) -> anyhow::Result<HttpLimit> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(HTTP_LIMIT_THREADS)
            .thread_name("http-limit")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_stored(stream, body.clone()));
            }
        });
        Ok(HttpLimit { runtime, address })
    }

    /// Returns the listener's address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops the server without waiting for open connections.
    pub(crate) fn stop(self) {
        self.runtime.shutdown_background();
    }
}

async fn serve_stored(stream: TcpStream, body: Bytes) {
    let service = service_fn(move |_request| {
        let response = hyper::Response::builder()
            .header("Content-Type", "application/json")
            .body(Full::new(body.clone()));
        async move { response }
    });
    // A client that closes its connection ends this task; there is nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Commits one `value` per LMDB write transaction, each flushed to disk as Coffer's storage
/// flushes it, in a fresh environment under `dir`, until `bound` is reached. Returns the
/// latency of each commit.
pub(crate) fn lmdb_commits(dir: &Path, value: &[u8], bound: Bound) -> anyhow::Result<Sample> {
    std::fs::create_dir_all(dir)?;
    let mut options = EnvOpenOptions::new();
    options.map_size(1 << 30).max_dbs(1);
    // SAFETY: the environment lives in a directory this process just created and nothing else
    // opens, and it is opened once. No flag that weakens durability is set.
    #[allow(unsafe_code)]
    let env = unsafe { options.open(dir) }
        .with_context(|| format!("failed to open an LMDB environment in {}", dir.display()))?;
    let mut txn = env.write_txn()?;
    let database: Database<Str, RawBytes> = env.create_database(&mut txn, Some("bench"))?;
    txn.commit()?;

    let started = Instant::now();
    let mut latencies = Vec::new();
    for number in 0..bound.requests {
        if started.elapsed() >= bound.duration {
            break;
        }
        let begun = Instant::now();
        let mut txn = env.write_txn()?;
        database.put(&mut txn, &format!("key-{number}"), value)?;
        txn.commit()?;
        latencies.push(begun.elapsed());
    }
    Ok(Sample::new(latencies, started.elapsed()))
}

/// An `etcd` process on 127.0.0.1 with its data in a temporary directory, killed on drop.
pub(crate) struct Etcd {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// Returns the path of `etcd` on `PATH`, or `None` when it is not installed.
    pub(crate) fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    }

    /// Starts `binary` as a one-member cluster and waits until its gateway accepts puts.
    pub(crate) fn start(binary: &Path) -> anyhow::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let client = free_address()?;
        let peer = free_address()?;
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(binary)
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls=http://{client}"))
            .arg(format!("--advertise-client-urls=http://{client}"))
            .arg(format!("--listen-peer-urls=http://{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
            .arg(format!("--initial-cluster=bench=http://{peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let mut etcd = Etcd {
            child,
            address: client,
            _dir: dir,
        };
        etcd.wait_until_ready()?;
        Ok(etcd)
    }

    /// Returns the client address.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        let http = reqwest::blocking::Client::new();
        let health = format!("http://{}/health", self.address);
        while Instant::now() < deadline {
            let response = http.get(&health).send();
            if response.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited with {status} before accepting connections");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("etcd did not accept connections within {ETCD_START_TIMEOUT:?}")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns etcd v3 gateway puts (`POST /v3/kv/put`) of `value` under the key `bench/<n>`.
pub(crate) fn etcd_put(value: &[u8]) -> MakeCall {
    let value = STANDARD.encode(value);
    std::sync::Arc::new(move |number| {
        let key = STANDARD.encode(format!("bench/{number}"));
        let body = serde_json::json!({ "key": key, "value": value });
        Call::post("/v3/kv/put".to_owned(), Bytes::from(body.to_string()))
    })
}

fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = StdListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
