//! The first step of secondary activation: the secondary sends its activation token to the
//! primary's API, which checks it and returns the bootstrap bundle exactly once.
//!
//! The request goes through the node's [`Network`], so a simulation runs it over its own
//! sockets. The token is a credential, so it travels over plain HTTP only to a loopback
//! address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coffer_core::request::Secret;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::server::cluster::TlsCrypto;
use crate::server::net::Network;

/// How long connecting, the TLS handshake and the whole exchange may each take.
const UNWRAP_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest response accepted from the primary. A bundle is a few kilobytes.
const MAX_RESPONSE_SIZE: usize = 1 << 20;

/// A failure to fetch the bundle. Each message names the address it concerns.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    /// The primary's API address does not parse.
    #[error(
        "invalid primary API address {address:?}: {reason}; give it as https://host:port, \
         in primary_api_addr or the primary's api_addr"
    )]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// The problem with the address.
        reason: String,
    },
    /// The address uses plain HTTP and is not a loopback address.
    #[error(
        "refusing to send the activation token over plain HTTP to {address}; the primary's \
         API address must use https unless it is a loopback address"
    )]
    PlainHttp {
        /// The address as given.
        address: String,
    },
    /// The CA file contains no usable certificate.
    #[error("invalid ca_file: {0}")]
    CaFile(String),
    /// No connection could be opened.
    #[error("the primary's API at {address} is unreachable: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// The connection error.
        reason: String,
    },
    /// The TLS handshake with the primary's API failed.
    #[error("the TLS handshake with the primary's API at {address} failed: {reason}")]
    Tls {
        /// The address tried.
        address: String,
        /// The handshake error.
        reason: String,
    },
    /// The primary returned an error.
    #[error("the primary at {address} refused the activation token: {message}")]
    Refused {
        /// The address tried.
        address: String,
        /// The HTTP status.
        status: u16,
        /// The primary's error messages.
        message: String,
    },
    /// The primary's response is not a bundle.
    #[error("the primary at {address} sent an unusable answer: {reason}")]
    BadResponse {
        /// The address tried.
        address: String,
        /// The problem with the response.
        reason: String,
    },
}

/// The primary's API endpoint, parsed from its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryApi {
    address: String,
    tls: bool,
    host: String,
    port: u16,
}

impl PrimaryApi {
    /// Parses `https://host:port` (or `http://` for a loopback host). A path is ignored.
    pub fn parse(address: &str) -> Result<PrimaryApi, UnwrapError> {
        let invalid = |reason: &str| UnwrapError::InvalidAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = address.parse().map_err(|_| invalid("it is not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(_) => return Err(invalid("the scheme must be https or http")),
            None => return Err(invalid("it has no scheme")),
        };
        let host = uri
            .host()
            .ok_or_else(|| invalid("it has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let api = PrimaryApi {
            address: address.to_owned(),
            tls,
            host,
            port,
        };
        if !api.tls && !api.is_loopback() {
            return Err(UnwrapError::PlainHttp {
                address: address.to_owned(),
            });
        }
        Ok(api)
    }

    /// Returns whether the address uses https.
    pub fn uses_tls(&self) -> bool {
        self.tls
    }

    /// Returns whether the host is a loopback address or `localhost`.
    fn is_loopback(&self) -> bool {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, UnwrapError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let unreachable = |reason: String| UnwrapError::Unreachable {
            address: self.address.clone(),
            reason,
        };
        let mut addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|error| unreachable(format!("cannot resolve {}: {error}", self.host)))?;
        addresses
            .next()
            .ok_or_else(|| unreachable(format!("{} resolves to no address", self.host)))
    }
}

/// Sends `token` to the primary's `sys/wrapping/unwrap` and returns the bundle as JSON bytes.
///
/// `ca_pem` is the operator's `ca_file` contents, trusted for the primary's API certificate;
/// without it the system's roots are used. TLS runs on `crypto`'s provider and clock.
pub async fn unwrap_bundle<N: Network>(
    network: &N,
    primary: &PrimaryApi,
    token: &Secret,
    ca_pem: Option<&[u8]>,
    crypto: &TlsCrypto,
) -> Result<Vec<u8>, UnwrapError> {
    let exchange = exchange(network, primary, token, ca_pem, crypto);
    tokio::time::timeout(UNWRAP_TIMEOUT, exchange)
        .await
        .map_err(|_| UnwrapError::Unreachable {
            address: primary.address.clone(),
            reason: format!("no answer within {} s", UNWRAP_TIMEOUT.as_secs()),
        })?
}

async fn exchange<N: Network>(
    network: &N,
    primary: &PrimaryApi,
    token: &Secret,
    ca_pem: Option<&[u8]>,
    crypto: &TlsCrypto,
) -> Result<Vec<u8>, UnwrapError> {
    let connector = if primary.tls {
        Some(tls_connector(ca_pem, crypto)?)
    } else {
        None
    };
    let socket = primary.resolve().await?;
    let stream = network
        .connect(socket)
        .await
        .map_err(|error| UnwrapError::Unreachable {
            address: primary.address.clone(),
            reason: error.to_string(),
        })?;
    let (status, body) = match connector {
        Some(connector) => {
            let name = ServerName::try_from(primary.host.clone()).map_err(|error| {
                UnwrapError::InvalidAddress {
                    address: primary.address.clone(),
                    reason: error.to_string(),
                }
            })?;
            let stream =
                connector
                    .connect(name, stream)
                    .await
                    .map_err(|error| UnwrapError::Tls {
                        address: primary.address.clone(),
                        reason: error.to_string(),
                    })?;
            post_unwrap(stream, primary, token).await?
        }
        None => post_unwrap(stream, primary, token).await?,
    };
    bundle_from(primary, status, &body)
}

fn tls_connector(ca_pem: Option<&[u8]>, crypto: &TlsCrypto) -> Result<TlsConnector, UnwrapError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let mut reader = pem;
            for certificate in rustls_pemfile::certs(&mut reader) {
                let certificate = certificate
                    .map_err(|error| UnwrapError::CaFile(format!("unreadable PEM: {error}")))?;
                roots
                    .add(certificate)
                    .map_err(|error| UnwrapError::CaFile(error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(UnwrapError::CaFile(
                    "it contains no PEM certificate".to_owned(),
                ));
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for certificate in loaded.certs {
                // A malformed system root is skipped, as browsers do.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = Arc::clone(&crypto.provider);
    let config = ClientConfig::builder_with_details(provider, Arc::clone(&crypto.time))
        .with_safe_default_protocol_versions()
        .map_err(|error| UnwrapError::CaFile(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn post_unwrap<S>(
    stream: S,
    primary: &PrimaryApi,
    token: &Secret,
) -> Result<(StatusCode, Bytes), UnwrapError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let failed = |reason: String| UnwrapError::Unreachable {
        address: primary.address.clone(),
        reason,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| failed(error.to_string()))?;
    let connection = tokio::spawn(connection);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/sys/wrapping/unwrap")
        .header(
            http::header::HOST,
            format!("{}:{}", primary.host, primary.port),
        )
        .header("X-Vault-Token", token.expose())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .map_err(|error| failed(error.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| failed(error.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_SIZE)
        .collect()
        .await
        .map_err(|error| UnwrapError::BadResponse {
            address: primary.address.clone(),
            reason: format!("reading the body failed: {error}"),
        })?
        .to_bytes();
    connection.abort();
    Ok((status, body))
}

fn bundle_from(
    primary: &PrimaryApi,
    status: StatusCode,
    body: &[u8],
) -> Result<Vec<u8>, UnwrapError> {
    let bad = |reason: String| UnwrapError::BadResponse {
        address: primary.address.clone(),
        reason,
    };
    let parsed: Value = serde_json::from_slice(body).map_err(|error| {
        bad(format!(
            "HTTP {status} with a body that is not JSON: {error}"
        ))
    })?;
    if !status.is_success() {
        let message = match parsed.get("errors") {
            Some(Value::Array(errors)) => errors
                .iter()
                .map(|error| {
                    error
                        .as_str()
                        .map_or_else(|| error.to_string(), str::to_owned)
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => format!("HTTP {status}"),
        };
        return Err(UnwrapError::Refused {
            address: primary.address.clone(),
            status: status.as_u16(),
            message,
        });
    }
    match parsed.get("data") {
        Some(data @ Value::Object(_)) => serde_json::to_vec(data)
            .map_err(|error| bad(format!("the bundle does not encode: {error}"))),
        _ => Err(bad("the answer has no data object".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_address_parses_with_default_port() {
        let api = PrimaryApi::parse("https://vault.example.com").unwrap();
        assert!(api.tls);
        assert_eq!((api.host.as_str(), api.port), ("vault.example.com", 443));
    }

    #[test]
    fn plain_http_is_allowed_to_loopback_only() {
        for address in [
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200",
        ] {
            assert!(PrimaryApi::parse(address).is_ok(), "{address}");
        }
        let error = PrimaryApi::parse("http://10.0.0.5:8200").unwrap_err();
        assert!(matches!(error, UnwrapError::PlainHttp { .. }), "{error}");
        assert!(
            error.to_string().contains("http://10.0.0.5:8200"),
            "{error}"
        );
    }

    #[test]
    fn address_without_scheme_is_rejected() {
        let error = PrimaryApi::parse("127.0.0.1:8200").unwrap_err().to_string();
        assert!(error.contains("https://host:port"), "{error}");
    }

    #[test]
    fn error_answer_carries_the_primarys_messages() {
        let api = PrimaryApi::parse("https://p:8200").unwrap();
        let body = br#"{"errors":["wrapping token is not valid or does not exist"]}"#;
        let error = bundle_from(&api, StatusCode::BAD_REQUEST, body).unwrap_err();
        let UnwrapError::Refused {
            status, message, ..
        } = &error
        else {
            panic!("expected a refusal, got {error}");
        };
        assert_eq!(*status, 400);
        assert_eq!(message, "wrapping token is not valid or does not exist");
    }

    #[test]
    fn success_answer_yields_the_data_object() {
        let api = PrimaryApi::parse("https://p:8200").unwrap();
        let body = br#"{"request_id":"r","data":{"cluster_id":"c"}}"#;
        let bundle = bundle_from(&api, StatusCode::OK, body).unwrap();
        assert_eq!(bundle, br#"{"cluster_id":"c"}"#);
    }

    #[test]
    fn ca_file_without_certificates_is_rejected() {
        let error = tls_connector(Some(b"not a pem"), &TlsCrypto::default())
            .err()
            .unwrap();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }
}
