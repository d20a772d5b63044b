//! A Vault API client for simulated hosts: HTTP/1.1 over TLS over turmoil TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio_rustls::TlsConnector;
use turmoil::net::TcpStream;

use crate::environment::seeded_crypto;

/// The API port of every simulated node.
pub const API_PORT: u16 = 8200;

/// How long a request may take before the client gives up on it, unless
/// [`ApiClient::with_timeout`] sets another bound.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A response's status, JSON body (`Value::Null` for an empty body) and `X-Vault-Index`.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The parsed body.
    pub body: Value,
    /// The `X-Vault-Index` header, which a response to a write carries.
    pub index: Option<String>,
}

impl ApiResponse {
    /// Returns the `errors` array of an error body, joined.
    pub fn errors(&self) -> String {
        match self.body["errors"].as_array() {
            Some(errors) => errors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; "),
            None => String::new(),
        }
    }
}

/// Sends API requests to one simulated host. It must be used from inside the simulation.
#[derive(Clone)]
pub struct ApiClient {
    host: String,
    token: String,
    index: Option<String>,
    timeout: Duration,
    connector: TlsConnector,
}

impl ApiClient {
    /// Makes a client of `host` that trusts the API certificate `ca_der`.
    pub fn new(host: &str, ca_der: &[u8]) -> anyhow::Result<ApiClient> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .context("the API certificate is not a valid trust anchor")?;
        // The simulated clock also sets the ticket age that a resumed handshake sends.
        let crypto = seeded_crypto();
        let config = ClientConfig::builder_with_details(crypto.provider, crypto.time)
            .with_safe_default_protocol_versions()
            .context("ring supports no default TLS version")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ApiClient {
            host: host.to_owned(),
            token: String::new(),
            index: None,
            timeout: REQUEST_TIMEOUT,
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Returns a client that sends `token` as `X-Vault-Token`.
    pub fn with_token(&self, token: &str) -> ApiClient {
        ApiClient {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// Returns a client that sends `index` as `X-Vault-Index`, so the node waits for that state
    /// before it responds.
    pub fn with_index(&self, index: &str) -> ApiClient {
        ApiClient {
            index: Some(index.to_owned()),
            ..self.clone()
        }
    }

    /// Returns a client that waits up to `timeout` for each response.
    pub fn with_timeout(&self, timeout: Duration) -> ApiClient {
        ApiClient {
            timeout,
            ..self.clone()
        }
    }

    /// Returns the host this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends a GET of `/v1/{path}`.
    pub async fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(Method::GET, path, None).await
    }

    /// Sends a POST of `/v1/{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<ApiResponse> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Sends a DELETE of `/v1/{path}`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(Method::DELETE, path, None).await
    }

    /// Sends one request and waits for its response, at most [`REQUEST_TIMEOUT`] or the bound
    /// that [`ApiClient::with_timeout`] set.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        let exchange = self.exchange(method.clone(), path, body);
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .with_context(|| format!("{method} {path} on {} timed out", self.host))
            .and_then(|result| result);
        match &result {
            Ok(response) => {
                tracing::info!(host = %self.host, %method, path, status = response.status, "response");
            }
            Err(error) => {
                tracing::info!(host = %self.host, %method, path, error = %format!("{error:#}"), "request failed");
            }
        }
        result
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        let ip: IpAddr = turmoil::lookup(self.host.as_str());
        let stream = TcpStream::connect(SocketAddr::new(ip, API_PORT))
            .await
            .with_context(|| format!("connecting to {} failed", self.host))?;
        let name = ServerName::IpAddress(ip.into());
        let stream = self
            .connector
            .connect(name, stream)
            .await
            .with_context(|| format!("the TLS handshake with {} failed", self.host))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("the HTTP handshake failed")?;
        let connection = tokio::spawn(connection);
        let payload = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body)?),
            None => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/v1/{path}"))
            .header(http::header::HOST, format!("{ip}:{API_PORT}"))
            .header(http::header::CONTENT_TYPE, "application/json");
        if !self.token.is_empty() {
            request = request.header("X-Vault-Token", &self.token);
        }
        if let Some(index) = &self.index {
            request = request.header("X-Vault-Index", index);
        }
        let response = sender
            .send_request(request.body(Full::new(payload))?)
            .await
            .context("the request failed")?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-vault-index")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .into_body()
            .collect()
            .await
            .context("reading the response body failed")?
            .to_bytes();
        connection.abort();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).context("the response body is not JSON")?
        };
        Ok(ApiResponse {
            status,
            body,
            index,
        })
    }
}
