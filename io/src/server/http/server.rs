//! The API listener: accepts connections from a [`Listener`], optionally wraps them in TLS,
//! and serves HTTP/1.1 and HTTP/2 with hyper.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use coffer_core::Timestamp;
use coffer_core::storage::Storage;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::activity::Activity;
use super::request::{log_path, map_request};
use super::response::{render_errors, render_result};
use crate::server::environment::Environment;
use crate::server::net::{Listener, Stream};
use crate::server::node::Node;

/// Bounds on what one request may cost the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Maximum request body size in bytes. A larger body gets 413.
    pub max_request_size: u64,
    /// Maximum size of the buffered request head (request line and headers) in bytes.
    pub max_header_size: usize,
    /// Time a request may take from its head to its response before it gets 503.
    pub request_timeout: Duration,
    /// Time a client has, from the moment its connection is accepted, to finish the TLS
    /// handshake and send a complete request head. It holds for HTTP/1, HTTP/2 and a client
    /// that sends nothing. Later HTTP/1 request heads get the same time each.
    pub handshake_timeout: Duration,
    /// Time a connection may stay open with no request in flight after its last response.
    pub idle_timeout: Duration,
    /// Maximum number of open connections. A connection beyond it is closed at once, so idle
    /// or slow clients cannot exhaust the process's file descriptors.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_request_size: 32 << 20,
            max_header_size: 64 << 10,
            request_timeout: Duration::from_secs(90),
            handshake_timeout: Duration::from_secs(10),
            // Vault's listener `http_idle_timeout` defaults to 5 minutes as well.
            idle_timeout: Duration::from_secs(300),
            max_connections: 4096,
        }
    }
}

/// How long shutdown waits for in-flight connections before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (up to a grace period) and returns.
pub async fn serve<S, E, L>(
    node: Arc<Node<S, E>>,
    mut listener: L,
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: Storage + 'static,
    E: Environment,
    L: Listener,
{
    let builder = Arc::new(connection_builder(limits));
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut rejected: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        rejected += 1;
                        // Logging every rejection would let a flood of connections flood the
                        // log too: log the 1st, 2nd, 4th, 8th, ... only.
                        if rejected.is_power_of_two() {
                            tracing::warn!(
                                %peer,
                                max_connections = limits.max_connections,
                                rejected,
                                "too many open connections; closing a new one"
                            );
                        }
                        drop(stream);
                        continue;
                    };
                    let connection = Connection {
                        node: Arc::clone(&node),
                        builder: Arc::clone(&builder),
                        watcher: graceful.watcher(),
                        tls: tls.clone(),
                        limits,
                        peer,
                    };
                    tokio::spawn(async move {
                        connection.run(stream).await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// Builds the HTTP/1 and HTTP/2 connection settings. Hyper's own `Date` header reads the system
/// clock, so it is off and [`handle`] sets `Date` from the node's environment.
fn connection_builder(limits: HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_buf_size(limits.max_header_size.max(8192));
    builder
        .http2()
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size).unwrap_or(u32::MAX));
    builder
}

struct Connection<S, E> {
    node: Arc<Node<S, E>>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
    tls: Option<TlsAcceptor>,
    limits: HttpLimits,
    peer: SocketAddr,
}

impl<S, E> Connection<S, E>
where
    S: Storage + 'static,
    E: Environment,
{
    async fn run(self, stream: impl Stream) {
        // The handshake timeout counts from the accept, so the TLS handshake and the first
        // request head share it.
        let activity = Activity::new();
        match self.tls.clone() {
            None => self.serve(stream, activity).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => self.serve(stream, activity).await,
                    Ok(Err(error)) => {
                        tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
        }
    }

    /// Serves requests until the client closes the connection, an error ends it, or it has
    /// carried no request for the handshake or idle timeout. Hyper's own HTTP/1 header timeout
    /// does not cover the HTTP version detection or HTTP/2, so this check covers every case.
    async fn serve(self, stream: impl Stream, activity: Arc<Activity>) {
        let Connection {
            node,
            builder,
            watcher,
            limits,
            peer,
            ..
        } = self;
        let requests = Arc::clone(&activity);
        let service = service_fn(move |request| {
            let node = Arc::clone(&node);
            let in_flight = requests.start();
            async move {
                let response = handle(&node, request, peer, limits).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let expired = activity.expired(limits.handshake_timeout, limits.idle_timeout);
        tokio::select! {
            biased;
            ended = watcher.watch(connection.into_owned()) => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
            () = expired => {
                tracing::debug!(%peer, "closing a connection that carried no request in time");
            }
        }
    }
}

async fn handle<S, E>(
    node: &Node<S, E>,
    request: http::Request<Incoming>,
    peer: SocketAddr,
    limits: HttpLimits,
) -> http::Response<Full<Bytes>>
where
    S: Storage + 'static,
    E: Environment,
{
    let started = Instant::now();
    let method = request.method().clone();
    // Old token endpoints carry the token in the path (`auth/token/lookup/<token>`).
    let path = log_path(request.uri().path());
    let respond = respond(node, request, peer, limits);
    let mut response = match tokio::time::timeout(limits.request_timeout, respond).await {
        Ok(response) => response,
        Err(_) => render_errors(
            503,
            &[format!(
                "the request timed out after {}s",
                limits.request_timeout.as_secs()
            )],
        ),
    };
    if method == http::Method::HEAD {
        *response.body_mut() = Bytes::new();
    }
    response
        .headers_mut()
        .insert(http::header::DATE, http_date(node.environment().now()));
    // The path is logged without the query, and never the token or the body.
    tracing::debug!(
        %method,
        %path,
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response.map(Full::new)
}

/// Formats `now` as an HTTP date (RFC 9110, section 5.6.7), such as
/// `Thu, 01 Jan 2026 00:00:00 GMT`.
fn http_date(now: Timestamp) -> http::HeaderValue {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
    http::HeaderValue::from_str(&httpdate::fmt_http_date(time))
        .expect("an HTTP date is a valid header value")
}

async fn respond<S, E>(
    node: &Node<S, E>,
    request: http::Request<Incoming>,
    peer: SocketAddr,
    limits: HttpLimits,
) -> http::Response<Bytes>
where
    S: Storage + 'static,
    E: Environment,
{
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &parts.headers, limits.max_request_size).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let logical = map_request(
        &parts.method,
        path_and_query,
        &parts.headers,
        &body,
        Some(peer),
    );
    let logical = match logical {
        Ok(logical) => logical,
        Err((status, message)) => return render_errors(status, &messages(message)),
    };
    let path = logical.path.clone();
    let executed = node.execute(logical).await;
    let mut response = render_result(&executed.request_id, &path, &executed.result);
    if let Some(index) = executed.index {
        if let Ok(value) = http::HeaderValue::from_str(&index) {
            response.headers_mut().insert("x-vault-index", value);
        }
    }
    response
}

fn messages(message: String) -> Vec<String> {
    if message.is_empty() {
        Vec::new()
    } else {
        vec![message]
    }
}

/// Reads the body, stopping with 413 as soon as it passes `max` bytes so that no more than
/// `max` bytes are ever buffered.
async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    max: u64,
) -> Result<Bytes, http::Response<Bytes>> {
    let too_large = || {
        render_errors(
            413,
            &[format!(
                "the request body is larger than max_request_size ({max} bytes)"
            )],
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(render_errors(
            400,
            &[format!("failed to read the request body: {error}")],
        )),
    }
}

#[cfg(test)]
mod tests {
    use coffer_core::storage::MemStorage;
    use coffer_core::{Core, CoreConfig};
    use http::{Method, StatusCode};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    use rustls::pki_types::{CertificateDer, ServerName};

    use super::*;
    use crate::server::environment::SystemEnvironment;
    use crate::server::net::{Network, TokioNetwork};
    use crate::server::writer::WriterLimits;

    const LIMIT: u64 = 1024;

    struct TestServer {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start() -> TestServer {
        start_with(None).await
    }

    async fn start_with(tls: Option<TlsAcceptor>) -> TestServer {
        let limits = HttpLimits {
            max_request_size: LIMIT,
            ..HttpLimits::default()
        };
        start_with_limits(tls, limits).await
    }

    async fn start_with_limits(tls: Option<TlsAcceptor>, limits: HttpLimits) -> TestServer {
        start_with_environment(SystemEnvironment, tls, limits).await
    }

    async fn start_with_environment<E: Environment>(
        environment: E,
        tls: Option<TlsAcceptor>,
        limits: HttpLimits,
    ) -> TestServer {
        let core = Core::new(CoreConfig::default());
        let node = Node::start(
            core,
            MemStorage::new(),
            environment,
            WriterLimits::default(),
        )
        .unwrap();
        let listener = TokioNetwork
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(Arc::new(node), listener, tls, limits, shutdown));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    impl TestServer {
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            self.task.await.unwrap();
        }
    }

    async fn send(
        addr: SocketAddr,
        method: Method,
        uri: &str,
        body: Vec<u8>,
    ) -> http::Response<Bytes> {
        let stream = TcpStream::connect(addr).await.unwrap();
        send_over(stream, method, uri, body).await
    }

    async fn send_over(
        stream: impl Stream,
        method: Method,
        uri: &str,
        body: Vec<u8>,
    ) -> http::Response<Bytes> {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, "127.0.0.1")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        http::Response::from_parts(parts, body)
    }

    fn json_body(response: &http::Response<Bytes>) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    /// The system environment with its clock stopped at 2026-01-01T00:00:00Z.
    struct StoppedClock;

    impl Environment for StoppedClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_secs(1_767_225_600)
        }

        fn rng_seed(&self) -> [u8; 32] {
            SystemEnvironment.rng_seed()
        }
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let date = http_date(Timestamp::from_secs(1_767_225_600));
        assert_eq!(date, "Thu, 01 Jan 2026 00:00:00 GMT");
    }

    #[tokio::test]
    async fn date_header_comes_from_environment() {
        let server = start_with_environment(StoppedClock, None, HttpLimits::default()).await;
        let response = send(server.addr, Method::GET, "/v1/sys/health", Vec::new()).await;
        let dates: Vec<_> = response
            .headers()
            .get_all(http::header::DATE)
            .iter()
            .collect();
        assert_eq!(dates, ["Thu, 01 Jan 2026 00:00:00 GMT"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_body_gets_413_then_server_serves() {
        let server = start().await;
        let body = vec![b'x'; LIMIT as usize + 1];
        let response = send(server.addr, Method::POST, "/v1/secret/foo", body).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let message = json_body(&response)["errors"][0]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains("max_request_size (1024 bytes)"),
            "{message}"
        );

        let next = send(server.addr, Method::GET, "/elsewhere", Vec::new()).await;
        assert_eq!(next.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_body(&next), json!({"errors": []}));
        server.stop().await;
    }

    #[tokio::test]
    async fn connection_over_limit_is_closed() {
        let limits = HttpLimits {
            max_connections: 1,
            ..HttpLimits::default()
        };
        let server = start_with_limits(None, limits).await;
        let held = TcpStream::connect(server.addr).await.unwrap();
        // Give the accept loop time to hand the held connection its permit.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buffer)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the extra connection is closed: {read:?}"
        );

        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let response = send(server.addr, Method::GET, "/elsewhere", Vec::new()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        server.stop().await;
    }

    #[tokio::test]
    async fn chunked_body_over_limit_gets_413() {
        let server = start().await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = "POST /v1/secret/foo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("200\r\n{}\r\n", "y".repeat(0x200));
        for _ in 0..3 {
            stream.write_all(chunk.as_bytes()).await.unwrap();
        }
        let mut response = vec![0u8; 512];
        let read = stream.read(&mut response).await.unwrap();
        let text = String::from_utf8_lossy(&response[..read]);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        server.stop().await;
    }

    #[tokio::test]
    async fn body_within_limit_reaches_the_core() {
        let server = start().await;
        let response = send(server.addr, Method::POST, "/v1/secret/foo", b"{}".to_vec()).await;
        // The sealed core rejects a token-less request to a mount with 503 or 403, never 413.
        assert_ne!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn malformed_json_gets_400_over_http() {
        let server = start().await;
        let response = send(server.addr, Method::PUT, "/v1/secret/foo", b"{".to_vec()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let message = json_body(&response)["errors"][0]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("failed to parse JSON input"),
            "{message}"
        );
        server.stop().await;
    }

    fn self_signed(dir: &std::path::Path) -> (TlsAcceptor, CertificateDer<'static>) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let cert_file = dir.join("cert.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&cert_file, certified.cert.pem()).unwrap();
        std::fs::write(&key_file, certified.key_pair.serialize_pem()).unwrap();
        let crypto = crate::server::cluster::TlsCrypto::default();
        let config = crate::server::tls::server_config(&cert_file, &key_file, &crypto).unwrap();
        (TlsAcceptor::from(config), certified.cert.der().clone())
    }

    fn client_config(ca: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    #[tokio::test]
    async fn tls_listener_serves_api() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca) = self_signed(dir.path());
        let server = start_with(Some(acceptor)).await;
        let connector = tokio_rustls::TlsConnector::from(client_config(ca));
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();

        let response = send_over(stream, Method::GET, "/elsewhere", Vec::new()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_body(&response), json!({"errors": []}));
        server.stop().await;
    }

    #[tokio::test]
    async fn plain_client_on_tls_listener_gets_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, _) = self_signed(dir.path());
        let server = start_with(Some(acceptor)).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        assert!(!response.starts_with(b"HTTP/1.1"));
        server.stop().await;
    }

    #[tokio::test]
    async fn oversized_header_is_rejected() {
        let server = start().await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let filler = "a".repeat(HttpLimits::default().max_header_size + 1024);
        let head = format!("GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nX-Filler: {filler}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");
        server.stop().await;
    }

    /// Limits with short connection timeouts, so tests can watch them close connections.
    fn short_timeouts() -> HttpLimits {
        HttpLimits {
            handshake_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            ..HttpLimits::default()
        }
    }

    /// Sends `bytes`, then reads until the server closes the connection. Panics if it is still
    /// open after 5 s, well past the short timeouts.
    async fn assert_closed_after(mut stream: impl Stream, bytes: &[u8]) {
        stream.write_all(bytes).await.unwrap();
        let mut received = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received));
        let read = read.await;
        assert!(read.is_ok(), "the server kept the connection open");
    }

    #[tokio::test]
    async fn silent_connection_is_closed() {
        let server = start_with_limits(None, short_timeouts()).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        assert_closed_after(stream, b"").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn partial_http1_head_is_closed() {
        let server = start_with_limits(None, short_timeouts()).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        assert_closed_after(stream, b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn http2_preface_alone_is_closed() {
        let server = start_with_limits(None, short_timeouts()).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        assert_closed_after(stream, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn silent_tls_client_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (acceptor, ca) = self_signed(dir.path());
        let server = start_with_limits(Some(acceptor), short_timeouts()).await;
        let connector = tokio_rustls::TlsConnector::from(client_config(ca));
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        assert_closed_after(stream, b"").await;
        server.stop().await;
    }

    #[tokio::test]
    async fn idle_http2_connection_is_closed() {
        let server = start_with_limits(None, short_timeouts()).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let request = http::Request::builder()
            .uri("http://127.0.0.1/elsewhere")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let ended = tokio::time::timeout(Duration::from_secs(5), connection).await;
        assert!(
            ended.is_ok(),
            "the server kept the idle HTTP/2 connection open"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn keep_alive_connection_serves_until_idle() {
        let server = start_with_limits(None, short_timeouts()).await;
        let stream = TcpStream::connect(server.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        // Requests spaced closer than the idle timeout keep the connection open past the
        // handshake timeout.
        for _ in 0..4 {
            let response = sender.send_request(get("/elsewhere")).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server.stop().await;
    }

    #[derive(Clone, Default)]
    struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for LogBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `send` against a test server while capturing every log line at TRACE level.
    fn capture_log<F>(send: F) -> String
    where
        F: AsyncFnOnce(&mut hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let server = start().await;
                let stream = TcpStream::connect(server.addr).await.unwrap();
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                send(&mut sender).await;
                server.stop().await;
            });
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    fn get(uri: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::HOST, "127.0.0.1")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[test]
    fn request_log_omits_token_and_body() {
        let log = capture_log(async |sender| {
            let request = http::Request::builder()
                .method(Method::POST)
                .uri("/v1/secret/foo?q=1")
                .header(http::header::HOST, "127.0.0.1")
                .header("X-Vault-Token", "hvs.known-token-value")
                .body(Full::new(Bytes::from(
                    r#"{"password": "known-body-value"}"#,
                )))
                .unwrap();
            sender.send_request(request).await.unwrap();
            let lookup = get("/v1/auth/token/lookup/hvs.token-in-the-path");
            sender.send_request(lookup).await.unwrap();
        });
        assert!(log.contains("/v1/secret/foo"), "{log}");
        assert!(log.contains("/v1/auth/token/lookup/<redacted>"), "{log}");
        assert!(!log.contains("token-in-the-path"), "{log}");
        assert!(!log.contains("known-token-value"), "{log}");
        assert!(!log.contains("known-body-value"), "{log}");
        assert!(!log.contains("q=1"), "{log}");
    }

    #[test]
    fn request_log_redacts_unnormalised_token_paths() {
        let uris = [
            "/v1/auth//token/lookup/hvs.double-slash-token",
            "/v1/auth/token/lookup%2Fhvs.encoded-slash-token",
            "/v1/auth/token/lookup%2fhvs.lower-hex-token",
        ];
        let log = capture_log(async |sender| {
            for uri in uris {
                sender.send_request(get(uri)).await.unwrap();
            }
        });
        assert!(log.contains("/v1/auth/token/lookup/<redacted>"), "{log}");
        assert!(!log.contains("double-slash-token"), "{log}");
        assert!(!log.contains("encoded-slash-token"), "{log}");
        assert!(!log.contains("lower-hex-token"), "{log}");
    }
}
