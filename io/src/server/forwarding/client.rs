//! The secondary's side of forwarding: one multiplexed mTLS connection to the primary's
//! cluster port, opened on first use and again after it fails.
//!
//! A forward that loses its connection, or gets no response within
//! [`ClientLimits::attempt_timeout`], is sent again with the same request id after a short
//! backoff, until [`ClientLimits::attempts`] or [`ClientLimits::deadline`] runs out. The
//! primary's at-most-once executor makes these retries safe. A connection on which an attempt
//! timed out is closed. TCP may keep a connection open for minutes after its peer or the path
//! to it is gone, and every later forward on it would wait for its deadline too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coffer_core::error::Error;
use coffer_core::forwarding::{ForwardMessage, ForwardedAnswer, ForwardedRequest};
use coffer_core::replication::frame::{FrameDecoder, FrameLimits, encode_payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::server::cluster::{ClusterAlpn, ClusterConnector};
use crate::server::net::{Network, Stream};
use crate::server::node::{Forwarder, Forwarding};

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Bounds of the forwarding client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Frame and message size limits.
    pub frames: FrameLimits,
    /// Maximum number of forwards in flight on the connection; more wait for a slot.
    pub max_in_flight: usize,
    /// Maximum number of attempts of one forward.
    pub attempts: u32,
    /// Delay before the second attempt; it doubles for each later one.
    pub backoff: Duration,
    /// Maximum time from the first attempt to the response, after which the client gets 503.
    pub deadline: Duration,
    /// Maximum time one attempt waits for the primary's response before the connection is
    /// closed and the request is sent again on a new one.
    pub attempt_timeout: Duration,
    /// Maximum time one connection attempt, TCP and TLS, may take.
    pub connect_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits {
            frames: FrameLimits {
                max_frame_payload: 1024 * 1024,
                max_message_size: 64 * 1024 * 1024,
            },
            max_in_flight: 64,
            attempts: 3,
            backoff: Duration::from_millis(200),
            deadline: Duration::from_secs(5),
            // A forward usually returns within one round trip and one commit. With the 200 ms
            // backoff this leaves room for all three attempts within the 5 s deadline.
            attempt_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_millis(1500),
        }
    }
}

/// The forwarding client of one secondary.
pub struct ForwardClient<N: Network> {
    network: N,
    connector: ClusterConnector,
    addresses: Vec<SocketAddr>,
    limits: ClientLimits,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// The requests waiting for a response on one connection.
type Pending = Arc<Mutex<BTreeMap<String, oneshot::Sender<ForwardedAnswer>>>>;

/// One open connection: a task that writes queued requests and routes responses by request id.
struct Connection {
    outgoing: mpsc::Sender<ForwardedRequest>,
    pending: Pending,
    slots: Arc<Semaphore>,
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The failure of one attempt: the primary's address and the cause.
struct AttemptError {
    address: String,
    cause: String,
}

impl<N: Network + Clone> ForwardClient<N> {
    /// Makes a client that dials `addresses` in order with `connector`.
    pub fn new(
        network: N,
        connector: ClusterConnector,
        addresses: Vec<SocketAddr>,
        limits: ClientLimits,
    ) -> ForwardClient<N> {
        let connector = connector.with_handshake_timeout(limits.connect_timeout);
        ForwardClient {
            network,
            connector,
            addresses,
            limits,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `request` and waits for its response, retrying as the module documentation says.
    pub async fn send(&self, request: ForwardedRequest) -> Result<ForwardedAnswer, Error> {
        let deadline = Instant::now() + self.limits.deadline;
        let mut backoff = self.limits.backoff;
        let mut last = None;
        for attempt in 1..=self.limits.attempts.max(1) {
            let error = match self.attempt(&request, deadline).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            tracing::warn!(
                request_id = %request.request_id,
                attempt,
                primary = %error.address,
                cause = %error.cause,
                "forwarding a request to the primary failed"
            );
            last = Some(error);
            if Instant::now() >= deadline {
                break;
            }
            if attempt < self.limits.attempts && Instant::now() + backoff < deadline {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
        }
        let last = last.unwrap_or(AttemptError {
            address: self.address_list(),
            cause: "no attempt was made".to_owned(),
        });
        Err(unavailable(&last.address, &last.cause))
    }

    /// Makes one attempt, bounded by [`ClientLimits::attempt_timeout`] and by `deadline`, and
    /// closes the connection when the primary does not respond in time.
    async fn attempt(
        &self,
        request: &ForwardedRequest,
        deadline: Instant,
    ) -> Result<ForwardedAnswer, AttemptError> {
        let connection = match tokio::time::timeout_at(deadline, self.connection()).await {
            Ok(connection) => connection?,
            Err(_) => {
                return Err(AttemptError {
                    address: self.address_list(),
                    cause: format!(
                        "no connection within the {}ms deadline",
                        self.limits.deadline.as_millis()
                    ),
                });
            }
        };
        let address = connection.address.to_string();
        // A wait for a slot tells nothing about the connection, so only the deadline bounds it.
        let slot = tokio::time::timeout_at(deadline, Arc::clone(&connection.slots).acquire_owned());
        let _slot: OwnedSemaphorePermit = match slot.await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => {
                return Err(AttemptError {
                    address,
                    cause: "the connection closed".to_owned(),
                });
            }
            Err(_) => {
                return Err(AttemptError {
                    address,
                    cause: format!(
                        "{} forwards were in flight until the {}ms deadline",
                        self.limits.max_in_flight,
                        self.limits.deadline.as_millis()
                    ),
                });
            }
        };
        let started = Instant::now();
        let give_up = (started + self.limits.attempt_timeout).min(deadline);
        match tokio::time::timeout_at(give_up, self.exchange(&connection, request)).await {
            Ok(result) => result,
            Err(_) => {
                self.drop_connection(&connection).await;
                Err(AttemptError {
                    address,
                    cause: format!(
                        "no response within {}ms, so the connection was closed",
                        (Instant::now() - started).as_millis()
                    ),
                })
            }
        }
    }

    /// Sends `request` on `connection`, holding one of its slots, and waits for its response.
    async fn exchange(
        &self,
        connection: &Arc<Connection>,
        request: &ForwardedRequest,
    ) -> Result<ForwardedAnswer, AttemptError> {
        let address = connection.address.to_string();
        let lost = |cause: &str| AttemptError {
            address: address.clone(),
            cause: cause.to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        lock(&connection.pending).insert(request.request_id.clone(), reply);
        if connection.outgoing.send(request.clone()).await.is_err() {
            self.drop_connection(connection).await;
            return Err(lost("the connection closed before the request was sent"));
        }
        match answer.await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.drop_connection(connection).await;
                Err(lost("the connection closed before the primary answered"))
            }
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, AttemptError> {
        let mut current = self.connection.lock().await;
        if let Some(connection) = current
            .as_ref()
            .filter(|connection| !connection.task.is_finished())
        {
            return Ok(Arc::clone(connection));
        }
        let connection = Arc::new(self.connect().await?);
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Closes `failed`, which fails every attempt still waiting on it, and removes it so the
    /// next attempt connects again.
    async fn drop_connection(&self, failed: &Arc<Connection>) {
        failed.close();
        let mut current = self.connection.lock().await;
        if current
            .as_ref()
            .is_some_and(|connection| Arc::ptr_eq(connection, failed))
        {
            *current = None;
        }
    }

    async fn connect(&self) -> Result<Connection, AttemptError> {
        let mut last = AttemptError {
            address: self.address_list(),
            cause: "the bundle lists no primary cluster address".to_owned(),
        };
        for address in &self.addresses {
            let failed = |cause: String| AttemptError {
                address: address.to_string(),
                cause,
            };
            let connected =
                tokio::time::timeout(self.limits.connect_timeout, self.network.connect(*address))
                    .await;
            let stream = match connected {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    last = failed(format!("connecting failed: {error}"));
                    continue;
                }
                Err(_) => {
                    last = failed(format!(
                        "connecting timed out after {}ms",
                        self.limits.connect_timeout.as_millis()
                    ));
                    continue;
                }
            };
            match self
                .connector
                .connect(stream, ClusterAlpn::Forwarding)
                .await
            {
                Ok(tls) => return Ok(Connection::start(tls, *address, self.limits)),
                Err(error) => last = failed(format!("the TLS handshake failed: {error}")),
            }
        }
        Err(last)
    }

    fn address_list(&self) -> String {
        let addresses: Vec<String> = self.addresses.iter().map(ToString::to_string).collect();
        addresses.join(", ")
    }
}

impl<N: Network + Clone> Forwarder for ForwardClient<N> {
    fn forward(&self, request: ForwardedRequest) -> Forwarding<'_> {
        Box::pin(self.send(request))
    }
}

impl Connection {
    /// Stops the connection's task and drops every waiting request's sender, so each waiting
    /// attempt fails at once and retries.
    fn close(&self) {
        self.task.abort();
        lock(&self.pending).clear();
    }

    fn start<S: Stream>(stream: S, address: SocketAddr, limits: ClientLimits) -> Connection {
        let slots = limits.max_in_flight.max(1);
        let (outgoing, requests) = mpsc::channel(slots);
        let pending: Pending = Arc::default();
        let task = tokio::spawn(run_connection(
            stream,
            requests,
            Arc::clone(&pending),
            limits.frames,
        ));
        Connection {
            outgoing,
            pending,
            slots: Arc::new(Semaphore::new(slots)),
            address,
            task,
        }
    }
}

/// Writes queued requests and routes responses until the connection fails, then drops every
/// waiting request's sender so its attempt fails and retries.
async fn run_connection<S: Stream>(
    stream: S,
    mut requests: mpsc::Receiver<ForwardedRequest>,
    pending: Pending,
    frames: FrameLimits,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new(frames);
    let mut buffer = vec![0u8; READ_CHUNK];
    let reason = loop {
        tokio::select! {
            biased;
            request = requests.recv() => {
                let Some(request) = request else {
                    break "the client closed".to_owned();
                };
                if let Err(reason) = write_request(&mut writer, request, frames, &pending).await {
                    break reason;
                }
            }
            read = reader.read(&mut buffer) => {
                let count = match read {
                    Ok(0) => break "the primary closed the connection".to_owned(),
                    Ok(count) => count,
                    Err(error) => break format!("reading from the primary failed: {error}"),
                };
                decoder.push(&buffer[..count]);
                if let Err(reason) = route_answers(&mut decoder, &pending) {
                    break reason;
                }
            }
        }
    };
    tracing::info!(%reason, "the forwarding connection to the primary closed");
    lock(&pending).clear();
}

async fn write_request<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    request: ForwardedRequest,
    frames: FrameLimits,
    pending: &Pending,
) -> Result<(), String> {
    let request_id = request.request_id.clone();
    let encoded = match encode_payload(&ForwardMessage::Request(request), frames) {
        Ok(encoded) => encoded,
        Err(error) => {
            // This request alone cannot be sent. Dropping its waiter fails its attempt, and the
            // connection stays up for the others.
            tracing::warn!(%request_id, %error, "a forwarded request does not fit in a message");
            lock(pending).remove(&request_id);
            return Ok(());
        }
    };
    for frame in encoded {
        writer
            .write_all(&frame)
            .await
            .map_err(|error| format!("writing to the primary failed: {error}"))?;
    }
    writer
        .flush()
        .await
        .map_err(|error| format!("writing to the primary failed: {error}"))
}

fn route_answers(decoder: &mut FrameDecoder, pending: &Pending) -> Result<(), String> {
    loop {
        match decoder.poll_payload::<ForwardMessage>() {
            Ok(None) => return Ok(()),
            Ok(Some(ForwardMessage::Answer(answer))) => {
                let waiter = lock(pending).remove(&answer.request_id);
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(answer);
                    }
                    None => tracing::warn!(
                        request_id = %answer.request_id,
                        "the primary answered a request that no one waits for"
                    ),
                }
            }
            Ok(Some(ForwardMessage::Request(_))) => {
                return Err("the primary sent a request, which only a secondary sends".to_owned());
            }
            Err(error) => return Err(format!("invalid forwarding frame: {error}")),
        }
    }
}

fn unavailable(address: &str, cause: &str) -> Error {
    Error::api(
        503,
        format!(
            "forwarding the write to the primary at {address} failed: {cause}; the write was \
             not confirmed, so retry it when the primary is reachable"
        ),
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
