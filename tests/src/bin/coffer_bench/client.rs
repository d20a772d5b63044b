//! The load generator: `concurrency` HTTP/1.1 keep-alive connections, each sending one request
//! at a time, until a request count or a deadline is reached.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::Sample;

/// One HTTP endpoint and the headers every request to it carries.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// The listener's address.
    pub(crate) address: SocketAddr,
    /// Headers added to every request, such as `X-Vault-Token`.
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Target {
    /// Makes a target for a Coffer server's API address such as `http://127.0.0.1:8200`,
    /// authenticated with `token`.
    pub(crate) fn vault(api_address: &str, token: &str) -> anyhow::Result<Target> {
        let host = api_address
            .strip_prefix("http://")
            .with_context(|| format!("the bench speaks plain HTTP, not {api_address}"))?;
        let address = host
            .parse()
            .with_context(|| format!("invalid API address {api_address}"))?;
        Ok(Target {
            address,
            headers: vec![("X-Vault-Token", token.to_owned())],
        })
    }

    /// Makes a target without extra headers.
    pub(crate) fn plain(address: SocketAddr) -> Target {
        Target {
            address,
            headers: Vec::new(),
        }
    }
}

/// One request of a workload: method, path and body.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    /// The HTTP method.
    pub(crate) method: Method,
    /// The path with its query, such as `/v1/secret/data/a`.
    pub(crate) path: String,
    /// The JSON body, empty for GET.
    pub(crate) body: Bytes,
}

impl Call {
    /// Makes a GET request without a body.
    pub(crate) fn get(path: String) -> Call {
        Call {
            method: Method::GET,
            path,
            body: Bytes::new(),
        }
    }

    /// Makes a POST request with a JSON body.
    pub(crate) fn post(path: String, body: Bytes) -> Call {
        Call {
            method: Method::POST,
            path,
            body,
        }
    }
}

/// When a load stops: after `requests` requests or at `duration`, whichever comes first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    /// Maximum number of requests sent.
    pub(crate) requests: u64,
    /// Maximum time from the first request.
    pub(crate) duration: Duration,
}

/// Builds the request with the given sequence number.
pub(crate) type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// Sends requests from `make_call` over `concurrency` connections until `bound` is reached and
/// returns each request's latency. Any status other than 200 or 204 stops the load with an
/// error that shows the status and body.
pub(crate) async fn run_load(
    target: &Target,
    concurrency: usize,
    bound: Bound,
    make_call: MakeCall,
) -> anyhow::Result<Sample> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + bound.duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let mut connection = Connection::open(target).await?;
        let next = Arc::clone(&next);
        let make_call = Arc::clone(&make_call);
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= bound.requests || Instant::now() >= deadline {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let sent = Instant::now();
                connection.send(&make_call(number)).await?;
                latencies.push(sent.elapsed());
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = workers.join_next().await {
        latencies.extend(joined.context("a load worker panicked")??);
    }
    Ok(Sample::new(latencies, started.elapsed()))
}

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    target: Target,
}

impl Connection {
    /// Connects to `target` with `TCP_NODELAY` set.
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(target.address)
            .await
            .with_context(|| format!("failed to connect to {}", target.address))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the HTTP/1.1 handshake failed")?;
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            target: target.clone(),
        })
    }

    /// Sends `call`, reads the whole response and returns its body. Fails unless the status is
    /// 200 or 204.
    pub(crate) async fn send(&mut self, call: &Call) -> anyhow::Result<Bytes> {
        let (status, body) = self.send_any(call).await?;
        if status != 200 && status != 204 {
            bail!(
                "{} {} returned {status}: {}",
                call.method,
                call.path,
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// Sends `call` and returns the status and body, whatever the status.
    pub(crate) async fn send_any(&mut self, call: &Call) -> anyhow::Result<(u16, Bytes)> {
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(&call.path)
            .header("Host", self.target.address.to_string())
            .header("Content-Type", "application/json");
        for (name, value) in &self.target.headers {
            request = request.header(*name, value);
        }
        let request = request.body(Full::new(call.body.clone()))?;
        self.sender.ready().await.context("the connection closed")?;
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("{} {} got no response", call.method, call.path))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
