//! TLS for the cluster port: mutually authenticated TLS 1.3 between a primary and its
//! secondaries, with replication and forwarding on one port, chosen by ALPN.
//!
//! The primary's [`ClusterAcceptor`] reads the ClientHello first and picks the server
//! configuration for the offered ALPN. Both configurations require a client certificate that
//! chains to the replication CA, is for client authentication only and names a secondary of
//! this cluster. Its (secondary id, serial) pair must be in the [`ActiveCerts`] set, which the
//! primary replaces at run time when it issues or revokes certificates. A secondary's
//! [`ClusterConnector`] accepts only the primary certificate pinned in its bootstrap bundle.
//!
//! In TLS 1.3 the client finishes its handshake before the server has checked the client
//! certificate, so on its own the client would learn of a rejection only on its first read. To
//! make [`ClusterConnector::connect`] prove both ends, the acceptor sends one byte (0x01) right
//! after the handshake and the connector reads it before returning. Session resumption is off
//! on both ends, so every connection checks the certificate against the current active set.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::server::watch;
use coffer_core::replication::activation::cert::{
    CertError, Purpose, parse_certificate, primary_dns_name, require_dns_name, require_purpose,
};
use coffer_core::replication::activation::{
    BootstrapBundle, PrivateKey, SecondaryPeer, parse_secondary_peer,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{Acceptor, ClientHello, NoServerSessionStorage, WebPkiClientVerifier};
use rustls::time_provider::{DefaultTimeProvider, TimeProvider};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{LazyConfigAcceptor, TlsConnector, client, server};

use crate::server::net::Stream;

/// The ALPN protocol of replication sessions.
pub const REPLICATION_ALPN: &[u8] = b"coffer-replication-v1";

/// The ALPN protocol of request forwarding from a secondary to the primary.
pub const FORWARDING_ALPN: &[u8] = b"coffer-forwarding-v1";

/// How long a peer has to complete the handshake, unless configured otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cryptography and the clock that a node's TLS runs on: the API listener, the cluster
/// port and the activation's unwrap request.
///
/// Servers use [`TlsCrypto::default`]: ring and the system clock. A simulation supplies a
/// provider with seeded randomness and key exchange and its simulated clock, so that
/// certificate validity is checked against simulated time.
#[derive(Clone, Debug)]
pub struct TlsCrypto {
    /// The rustls crypto provider.
    pub provider: Arc<CryptoProvider>,
    /// The clock rustls checks certificate validity against.
    pub time: Arc<dyn TimeProvider>,
}

impl Default for TlsCrypto {
    fn default() -> TlsCrypto {
        TlsCrypto {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            time: Arc::new(DefaultTimeProvider),
        }
    }
}

/// The byte the acceptor sends after a successful handshake.
const ACCEPTED: u8 = 0x01;

/// The maximum number of offered ALPN protocols an error message lists.
const MAX_LISTED_PROTOCOLS: usize = 8;

/// A protocol the cluster port serves, as negotiated by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterAlpn {
    /// [`REPLICATION_ALPN`]: a secondary streams the primary's WAL.
    Replication,
    /// [`FORWARDING_ALPN`]: a secondary forwards client requests to the primary.
    Forwarding,
}

impl ClusterAlpn {
    /// Returns the protocol's ALPN identifier.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            ClusterAlpn::Replication => REPLICATION_ALPN,
            ClusterAlpn::Forwarding => FORWARDING_ALPN,
        }
    }

    /// Looks up the protocol for an ALPN identifier.
    pub fn from_bytes(bytes: &[u8]) -> Option<ClusterAlpn> {
        [ClusterAlpn::Replication, ClusterAlpn::Forwarding]
            .into_iter()
            .find(|alpn| alpn.as_bytes() == bytes)
    }
}

impl fmt::Display for ClusterAlpn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterAlpn::Replication => "coffer-replication-v1",
            ClusterAlpn::Forwarding => "coffer-forwarding-v1",
        })
    }
}

/// The end of a cluster connection whose certificate or alert an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerRole {
    /// The primary, as seen by a connecting secondary.
    Primary,
    /// A secondary, as seen by the primary's acceptor.
    Secondary,
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerRole::Primary => "primary",
            PeerRole::Secondary => "secondary",
        })
    }
}

/// A certificate check of this module that failed during a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertRejection {
    /// The primary presented a valid certificate, but not the one pinned in the bundle.
    #[error("the primary's certificate does not match the pinned one")]
    PinMismatch,
    /// The primary's certificate is not for server authentication only.
    #[error("the primary's certificate is not a replication primary certificate: {0}")]
    NotPrimary(CertError),
    /// The client certificate is not a secondary certificate of this cluster.
    #[error("the client certificate is not a secondary certificate of this cluster: {0}")]
    NotSecondary(CertError),
    /// The client presented no certificate.
    #[error("the client presented no certificate")]
    NoClientCertificate,
    /// The secondary's certificate is not in the active set.
    #[error(
        "the certificate of secondary {secondary_id} with serial {serial} is not active: it was \
         revoked or replaced by a newer one"
    )]
    NotActive {
        /// The secondary id the certificate names.
        secondary_id: String,
        /// The certificate's serial as lowercase hex.
        serial: String,
    },
    /// The certificate's public key is not an Ed25519 key.
    #[error(
        "the {role}'s certificate has a {length}-byte public key, expected a 32-byte Ed25519 key"
    )]
    NotEd25519 {
        /// Whose certificate it is.
        role: PeerRole,
        /// The key's length in bytes.
        length: usize,
    },
}

/// An error setting up or running a cluster TLS handshake.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTlsError {
    /// The certificates or key given to build an acceptor or connector are unusable.
    #[error("invalid cluster TLS credentials: {reason}")]
    Credentials {
        /// The problem found.
        reason: String,
    },
    /// The client offered only ALPN protocols this port does not serve.
    #[error(
        "rejected the connection: the client offered ALPN {offered}, expected \
         coffer-replication-v1 or coffer-forwarding-v1"
    )]
    UnknownAlpn {
        /// The offered protocols, quoted and comma-separated.
        offered: String,
    },
    /// The client offered no ALPN protocol.
    #[error(
        "rejected the connection: the client offered no ALPN protocol, expected \
         coffer-replication-v1 or coffer-forwarding-v1"
    )]
    MissingAlpn,
    /// A certificate check of this module failed.
    #[error("{0}")]
    Rejected(CertRejection),
    /// The peer's certificate failed rustls's chain, name, validity or purpose checks.
    #[error("the {peer}'s certificate is invalid: {error}")]
    InvalidCertificate {
        /// Whose certificate it is.
        peer: PeerRole,
        /// The rustls error.
        error: rustls::Error,
    },
    /// The node does not accept cluster connections because it is not a replication primary.
    #[error(
        "the node rejected the cluster connection because it is not a replication primary; check \
         the primary's cluster address"
    )]
    NotPrimary,
    /// The peer aborted the handshake with a TLS alert.
    #[error("the {peer} aborted the handshake with the TLS alert {alert:?}{}", alert_hint(*.peer, *.alert))]
    AlertReceived {
        /// The sender of the alert.
        peer: PeerRole,
        /// The alert.
        alert: AlertDescription,
    },
    /// The primary completed the handshake without selecting the requested ALPN protocol.
    #[error("the primary did not select the ALPN protocol {expected}")]
    AlpnNotSelected {
        /// The requested protocol.
        expected: ClusterAlpn,
    },
    /// The primary closed the connection after the handshake without accepting it.
    #[error("the primary closed the connection before accepting it")]
    ClosedBeforeAccepted,
    /// Any other failure of the handshake or the transport under it.
    #[error("handshake failed: {0}")]
    Handshake(io::Error),
    /// The handshake did not complete in time.
    #[error("the cluster TLS handshake timed out after {} ms", .timeout.as_millis())]
    Timeout {
        /// The time allowed.
        timeout: Duration,
    },
}

/// The set of active secondary certificates, as (secondary id, serial) pairs.
///
/// Clones share one set. [`ActiveCerts::replace`] takes effect for every later handshake, and
/// [`ActiveCerts::revoked`] lets an open session end when its certificate leaves the set.
#[derive(Clone)]
pub struct ActiveCerts {
    set: Arc<watch::Sender<BTreeSet<(String, String)>>>,
}

impl ActiveCerts {
    /// Creates a set from (secondary id, serial as lowercase hex) pairs.
    pub fn new(certs: impl IntoIterator<Item = (String, String)>) -> ActiveCerts {
        let set = watch::Sender::new(certs.into_iter().collect());
        ActiveCerts { set: Arc::new(set) }
    }

    /// Replaces the whole set, for example after a revocation or a new secondary token.
    pub fn replace(&self, certs: impl IntoIterator<Item = (String, String)>) {
        self.set.send_replace(certs.into_iter().collect());
    }

    /// Checks whether the certificate of `secondary_id` with `serial` is active.
    pub fn is_active(&self, secondary_id: &str, serial: &str) -> bool {
        contains(&self.set.borrow(), secondary_id, serial)
    }

    /// Waits until `peer`'s certificate is not active, returning at once if it is not now.
    pub async fn revoked(&self, peer: &SecondaryPeer) {
        let mut changes = self.set.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = changes
            .wait_for(|set| !contains(set, &peer.secondary_id, &peer.serial))
            .await;
    }
}

impl fmt::Debug for ActiveCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveCerts")
            .field("count", &self.set.borrow().len())
            .finish()
    }
}

fn contains(set: &BTreeSet<(String, String)>, secondary_id: &str, serial: &str) -> bool {
    set.contains(&(secondary_id.to_owned(), serial.to_owned()))
}

/// The authenticated secondary at the other end of an accepted connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPeer {
    /// The secondary id and certificate serial from the client certificate.
    pub secondary: SecondaryPeer,
    /// The raw Ed25519 public key of the client certificate.
    pub public_key: [u8; 32],
}

/// A connection the primary accepted.
#[derive(Debug)]
pub struct AcceptedConnection<S> {
    /// The TLS stream, past the handshake and the acceptance byte.
    pub stream: server::TlsStream<S>,
    /// The negotiated protocol.
    pub alpn: ClusterAlpn,
    /// The authenticated secondary.
    pub peer: ClusterPeer,
}

/// The primary's side of cluster TLS.
#[derive(Debug)]
pub struct ClusterAcceptor {
    replication: Arc<ServerConfig>,
    forwarding: Arc<ServerConfig>,
    cluster_id: String,
    active: ActiveCerts,
}

impl ClusterAcceptor {
    /// Builds the acceptor from the CA certificate, the primary's cluster certificate and its
    /// Ed25519 key, all DER, and the live set of active secondary certificates.
    pub fn new(
        ca_cert_der: &[u8],
        cert_der: &[u8],
        key: &PrivateKey,
        cluster_id: &str,
        active: ActiveCerts,
    ) -> Result<ClusterAcceptor, ClusterTlsError> {
        let crypto = TlsCrypto::default();
        ClusterAcceptor::with_crypto(ca_cert_der, cert_der, key, cluster_id, active, &crypto)
    }

    /// Builds the acceptor as [`ClusterAcceptor::new`] does, on the given crypto provider and
    /// clock.
    pub fn with_crypto(
        ca_cert_der: &[u8],
        cert_der: &[u8],
        key: &PrivateKey,
        cluster_id: &str,
        active: ActiveCerts,
        crypto: &TlsCrypto,
    ) -> Result<ClusterAcceptor, ClusterTlsError> {
        check_primary_cert(cert_der, cluster_id).map_err(|error| credentials(&error))?;
        let provider = Arc::clone(&crypto.provider);
        let roots = root_store(ca_cert_der)?;
        let webpki = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|error| credentials(&format!("the CA certificate: {error}")))?;
        let verifier: Arc<dyn ClientCertVerifier> = Arc::new(SecondaryVerifier {
            webpki,
            cluster_id: cluster_id.to_owned(),
            active: active.clone(),
        });
        let config = |alpn| server_config(crypto, &verifier, cert_der, key, alpn);
        Ok(ClusterAcceptor {
            replication: config(ClusterAlpn::Replication)?,
            forwarding: config(ClusterAlpn::Forwarding)?,
            cluster_id: cluster_id.to_owned(),
            active,
        })
    }

    /// Returns the cluster id whose secondaries this acceptor admits.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Returns the live set of active secondary certificates.
    pub fn active(&self) -> &ActiveCerts {
        &self.active
    }

    /// Runs the server handshake on `stream` and sends the acceptance byte.
    ///
    /// Rejects an unknown or missing ALPN with a fatal `no_application_protocol` alert. The
    /// caller bounds the time this takes.
    pub async fn accept<S: Stream>(
        &self,
        stream: S,
    ) -> Result<AcceptedConnection<S>, ClusterTlsError> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
            .await
            .map_err(|error| classify(error, PeerRole::Secondary))?;
        let alpn = match choose_alpn(&start.client_hello()) {
            Ok(alpn) => alpn,
            Err(error) => {
                send_alert(start.io, AlertDescription::NoApplicationProtocol).await;
                return Err(error);
            }
        };
        let config = match alpn {
            ClusterAlpn::Replication => Arc::clone(&self.replication),
            ClusterAlpn::Forwarding => Arc::clone(&self.forwarding),
        };
        let mut stream = start
            .into_stream(config)
            .await
            .map_err(|error| classify(error, PeerRole::Secondary))?;

        let certificate = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or(ClusterTlsError::Rejected(
                CertRejection::NoClientCertificate,
            ))?;
        let peer =
            identify_secondary(certificate, &self.cluster_id).map_err(ClusterTlsError::Rejected)?;

        stream
            .write_all(&[ACCEPTED])
            .await
            .map_err(ClusterTlsError::Handshake)?;
        stream.flush().await.map_err(ClusterTlsError::Handshake)?;
        Ok(AcceptedConnection { stream, alpn, peer })
    }
}

/// Reads the ClientHello on `stream` and replies with a fatal `access_denied` alert, which a
/// [`ClusterConnector`] reports as [`ClusterTlsError::NotPrimary`].
///
/// A node that is not a primary calls this for every cluster connection. The caller bounds
/// the time this takes.
pub async fn reject_not_primary<S: Stream>(stream: S) -> Result<(), ClusterTlsError> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), stream)
        .await
        .map_err(|error| classify(error, PeerRole::Secondary))?;
    send_alert(start.io, AlertDescription::AccessDenied).await;
    Ok(())
}

/// A secondary's side of cluster TLS: it dials the primary pinned in its bootstrap bundle.
#[derive(Clone)]
pub struct ClusterConnector {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    handshake_timeout: Duration,
}

impl ClusterConnector {
    /// Builds the connector from the bundle's CA, pinned primary certificate and secondary
    /// certificate, and the secondary's key (the bundle's, or the one it generated itself).
    pub fn new(
        bundle: &BootstrapBundle,
        key: &PrivateKey,
    ) -> Result<ClusterConnector, ClusterTlsError> {
        ClusterConnector::with_crypto(bundle, key, &TlsCrypto::default())
    }

    /// Builds the connector as [`ClusterConnector::new`] does, on the given crypto provider
    /// and clock.
    pub fn with_crypto(
        bundle: &BootstrapBundle,
        key: &PrivateKey,
        crypto: &TlsCrypto,
    ) -> Result<ClusterConnector, ClusterTlsError> {
        check_bundle_secondary_cert(bundle)?;
        ClusterConnector::build(bundle, &bundle.secondary_cert_der, key, crypto)
    }

    /// Builds a connector that presents `client_cert_der`, which [`ClusterConnector::new`]
    /// requires to be the bundle's secondary certificate.
    fn build(
        bundle: &BootstrapBundle,
        client_cert_der: &[u8],
        key: &PrivateKey,
        crypto: &TlsCrypto,
    ) -> Result<ClusterConnector, ClusterTlsError> {
        let provider = Arc::clone(&crypto.provider);
        let roots = root_store(&bundle.ca_cert_der)?;
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|error| credentials(&format!("the bundle's CA certificate: {error}")))?;
        let verifier = Arc::new(PinnedPrimaryVerifier {
            webpki,
            pinned: bundle.primary_cert_der.clone(),
        });
        let chain = vec![CertificateDer::from(client_cert_der.to_vec())];
        let mut config = ClientConfig::builder_with_details(provider, Arc::clone(&crypto.time))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| credentials(&error))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, private_key_der(key))
            .map_err(|error| credentials(&format!("the secondary certificate and key: {error}")))?;
        config.resumption = Resumption::disabled();

        let server_name = ServerName::try_from(primary_dns_name(&bundle.cluster_id))
            .map_err(|error| credentials(&format!("the bundle's cluster id: {error}")))?;
        Ok(ClusterConnector {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Sets how long [`ClusterConnector::connect`] waits for the handshake and the acceptance.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ClusterConnector {
        self.handshake_timeout = timeout;
        self
    }

    /// Runs the client handshake for `alpn` on `stream` and waits until the primary has
    /// accepted this secondary's certificate.
    pub async fn connect<S: Stream>(
        &self,
        stream: S,
        alpn: ClusterAlpn,
    ) -> Result<client::TlsStream<S>, ClusterTlsError> {
        let timeout = self.handshake_timeout;
        tokio::time::timeout(timeout, self.handshake(stream, alpn))
            .await
            .unwrap_or(Err(ClusterTlsError::Timeout { timeout }))
    }

    async fn handshake<S: Stream>(
        &self,
        stream: S,
        alpn: ClusterAlpn,
    ) -> Result<client::TlsStream<S>, ClusterTlsError> {
        let mut stream = self
            .connector
            .with_alpn(vec![alpn.as_bytes().to_vec()])
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|error| classify(error, PeerRole::Primary))?;
        if stream.get_ref().1.alpn_protocol() != Some(alpn.as_bytes()) {
            return Err(ClusterTlsError::AlpnNotSelected { expected: alpn });
        }

        let mut acceptance = [0u8; 1];
        match stream.read_exact(&mut acceptance).await {
            Ok(_) if acceptance[0] == ACCEPTED => Ok(stream),
            Ok(_) => Err(ClusterTlsError::Handshake(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the primary sent {:#04x} instead of the acceptance byte",
                    acceptance[0]
                ),
            ))),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                Err(ClusterTlsError::ClosedBeforeAccepted)
            }
            Err(error) => Err(classify(error, PeerRole::Primary)),
        }
    }
}

impl fmt::Debug for ClusterConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConnector")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Checks a client certificate as rustls's WebPKI verifier does, then requires it to be an
/// active secondary certificate of this cluster.
#[derive(Debug)]
struct SecondaryVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    cluster_id: String,
    active: ActiveCerts,
}

impl ClientCertVerifier for SecondaryVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        let peer = identify_secondary(end_entity, &self.cluster_id).map_err(reject)?;
        let SecondaryPeer {
            secondary_id,
            serial,
        } = peer.secondary;
        if !self.active.is_active(&secondary_id, &serial) {
            return Err(reject(CertRejection::NotActive {
                secondary_id,
                serial,
            }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Checks the primary's certificate as rustls's WebPKI verifier does (chain to the bundle's
/// CA, validity, the name `primary.<cluster_id>.coffer`), then requires server authentication
/// only and the exact pinned certificate.
#[derive(Debug)]
struct PinnedPrimaryVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<u8>,
}

impl ServerCertVerifier for PinnedPrimaryVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let info = parse_certificate(end_entity)
            .map_err(|error| reject(CertRejection::NotPrimary(error)))?;
        require_purpose(&info, Purpose::ServerAuthOnly)
            .map_err(|error| reject(CertRejection::NotPrimary(error)))?;
        if !bool::from(end_entity.as_ref().ct_eq(self.pinned.as_slice())) {
            return Err(reject(CertRejection::PinMismatch));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

fn root_store(ca_cert_der: &[u8]) -> Result<Arc<RootCertStore>, ClusterTlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert_der.to_vec()))
        .map_err(|error| credentials(&format!("the CA certificate: {error}")))?;
    Ok(Arc::new(roots))
}

fn server_config(
    crypto: &TlsCrypto,
    verifier: &Arc<dyn ClientCertVerifier>,
    cert_der: &[u8],
    key: &PrivateKey,
    alpn: ClusterAlpn,
) -> Result<Arc<ServerConfig>, ClusterTlsError> {
    let chain = vec![CertificateDer::from(cert_der.to_vec())];
    let provider = Arc::clone(&crypto.provider);
    let mut config = ServerConfig::builder_with_details(provider, Arc::clone(&crypto.time))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| credentials(&error))?
        .with_client_cert_verifier(Arc::clone(verifier))
        .with_single_cert(chain, private_key_der(key))
        .map_err(|error| credentials(&format!("the primary certificate and key: {error}")))?;
    config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    // A resumed session skips the client certificate check, and with it the active set.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

fn private_key_der(key: &PrivateKey) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()))
}

fn credentials(reason: &dyn fmt::Display) -> ClusterTlsError {
    ClusterTlsError::Credentials {
        reason: reason.to_string(),
    }
}

/// Rejects a wrong certificate given to [`ClusterAcceptor::new`] before any peer receives it.
fn check_primary_cert(cert_der: &[u8], cluster_id: &str) -> Result<(), String> {
    let describe = |error: CertError| format!("the primary certificate: {error}");
    let info = parse_certificate(cert_der).map_err(describe)?;
    require_purpose(&info, Purpose::ServerAuthOnly).map_err(describe)?;
    require_dns_name(&info, &primary_dns_name(cluster_id)).map_err(describe)
}

fn check_bundle_secondary_cert(bundle: &BootstrapBundle) -> Result<(), ClusterTlsError> {
    let peer = parse_secondary_peer(&bundle.secondary_cert_der, &bundle.cluster_id)
        .map_err(|error| credentials(&format!("the bundle's secondary certificate: {error}")))?;
    if peer.secondary_id != bundle.secondary_id {
        return Err(credentials(&format!(
            "the bundle's secondary certificate names secondary {}, but the bundle is for {}",
            peer.secondary_id, bundle.secondary_id
        )));
    }
    Ok(())
}

/// Reads the secondary id, serial and Ed25519 key of a client certificate of `cluster_id`.
fn identify_secondary(der: &[u8], cluster_id: &str) -> Result<ClusterPeer, CertRejection> {
    let secondary = parse_secondary_peer(der, cluster_id).map_err(CertRejection::NotSecondary)?;
    let info = parse_certificate(der).map_err(CertRejection::NotSecondary)?;
    let public_key =
        info.public_key
            .as_slice()
            .try_into()
            .map_err(|_| CertRejection::NotEd25519 {
                role: PeerRole::Secondary,
                length: info.public_key.len(),
            })?;
    Ok(ClusterPeer {
        secondary,
        public_key,
    })
}

fn reject(rejection: CertRejection) -> rustls::Error {
    let other = OtherError(Arc::new(rejection));
    rustls::Error::InvalidCertificate(CertificateError::Other(other))
}

fn choose_alpn(hello: &ClientHello<'_>) -> Result<ClusterAlpn, ClusterTlsError> {
    let offered: Vec<&[u8]> = hello
        .alpn()
        .map(|protocols| protocols.collect())
        .unwrap_or_default();
    if offered.is_empty() {
        return Err(ClusterTlsError::MissingAlpn);
    }
    offered
        .iter()
        .find_map(|protocol| ClusterAlpn::from_bytes(protocol))
        .ok_or_else(|| ClusterTlsError::UnknownAlpn {
            offered: describe_protocols(&offered),
        })
}

/// Quotes the first few offered protocols, so a hostile ClientHello cannot make a huge message.
fn describe_protocols(offered: &[&[u8]]) -> String {
    let mut listed: Vec<String> = offered
        .iter()
        .take(MAX_LISTED_PROTOCOLS)
        .map(|protocol| format!("{:?}", String::from_utf8_lossy(protocol)))
        .collect();
    if offered.len() > MAX_LISTED_PROTOCOLS {
        listed.push(format!("and {} more", offered.len() - MAX_LISTED_PROTOCOLS));
    }
    listed.join(", ")
}

/// Writes a fatal alert as a plaintext TLS record and closes the stream. Errors are ignored
/// because the connection is being dropped either way.
async fn send_alert<S: Stream>(mut stream: S, alert: AlertDescription) {
    // Record type 21 (alert), legacy version TLS 1.2, length 2, level 2 (fatal), description.
    let record = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, u8::from(alert)];
    let _ = stream.write_all(&record).await;
    let _ = stream.shutdown().await;
}

/// Turns a handshake IO error into the error that names what failed.
fn classify(error: io::Error, peer: PeerRole) -> ClusterTlsError {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return ClusterTlsError::Handshake(error);
    };
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            match other.0.downcast_ref::<CertRejection>() {
                Some(rejection) => ClusterTlsError::Rejected(rejection.clone()),
                None => ClusterTlsError::InvalidCertificate {
                    peer,
                    error: tls.clone(),
                },
            }
        }
        rustls::Error::InvalidCertificate(_) => ClusterTlsError::InvalidCertificate {
            peer,
            error: tls.clone(),
        },
        rustls::Error::AlertReceived(AlertDescription::AccessDenied)
            if peer == PeerRole::Primary =>
        {
            ClusterTlsError::NotPrimary
        }
        rustls::Error::AlertReceived(alert) => ClusterTlsError::AlertReceived {
            peer,
            alert: *alert,
        },
        _ => ClusterTlsError::Handshake(error),
    }
}

fn alert_hint(peer: PeerRole, alert: AlertDescription) -> &'static str {
    match (peer, alert) {
        (
            PeerRole::Primary,
            AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate,
        ) => {
            "; the primary rejected this secondary's certificate, which may be revoked, replaced \
             by a newer one, expired or issued by another CA"
        }
        (PeerRole::Primary, AlertDescription::NoApplicationProtocol) => {
            "; the primary does not serve the requested ALPN protocol"
        }
        _ => "",
    }
}

/// Certificates and bundles for tests, made by the same CA code real nodes use.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::{SystemTime, UNIX_EPOCH};

    use coffer_core::replication::activation::{Epoch, IssuedCert, ReplicationCa};
    use coffer_core::time::Timestamp;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    use super::*;

    /// The cluster id of every test cluster.
    pub(crate) const CLUSTER_ID: &str = "c1";

    /// A primary's CA and cluster certificate with an active set.
    pub(crate) struct TestCluster {
        pub(crate) ca: ReplicationCa,
        pub(crate) primary: IssuedCert,
        pub(crate) active: ActiveCerts,
        rng: ChaCha20Rng,
    }

    /// A secondary's bundle, key and serial.
    pub(crate) struct TestSecondary {
        pub(crate) bundle: BootstrapBundle,
        pub(crate) key: PrivateKey,
        pub(crate) serial: String,
    }

    /// Reads the wall clock, because rustls checks certificate validity against it.
    pub(crate) fn now() -> Timestamp {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        Timestamp::from_secs(since_epoch.as_secs())
    }

    impl TestCluster {
        pub(crate) fn new(seed: u64) -> TestCluster {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let ca = ReplicationCa::generate(&mut rng, now(), CLUSTER_ID).unwrap();
            let primary = ca
                .issue_primary_cert(&mut rng, now(), &["127.0.0.1:8201"])
                .unwrap();
            TestCluster {
                ca,
                primary,
                active: ActiveCerts::new([]),
                rng,
            }
        }

        pub(crate) fn primary_key(&self) -> &PrivateKey {
            self.primary.key.as_ref().unwrap()
        }

        pub(crate) fn acceptor(&self) -> ClusterAcceptor {
            ClusterAcceptor::new(
                self.ca.cert_der(),
                &self.primary.cert_der,
                self.primary_key(),
                CLUSTER_ID,
                self.active.clone(),
            )
            .unwrap()
        }

        /// Issues a certificate for `secondary_id` and adds it to the active set.
        pub(crate) fn secondary(&mut self, secondary_id: &str) -> TestSecondary {
            let secondary = self.inactive_secondary(secondary_id);
            let mut certs: Vec<(String, String)> =
                self.active.set.borrow().iter().cloned().collect();
            certs.push((secondary_id.to_owned(), secondary.serial.clone()));
            self.active.replace(certs);
            secondary
        }

        /// Issues a certificate for `secondary_id` without activating it.
        pub(crate) fn inactive_secondary(&mut self, secondary_id: &str) -> TestSecondary {
            let issued = self
                .ca
                .issue_secondary_cert(&mut self.rng, now(), secondary_id)
                .unwrap();
            let bundle = BootstrapBundle {
                cluster_id: CLUSTER_ID.to_owned(),
                secondary_id: secondary_id.to_owned(),
                primary_cluster_addrs: vec!["127.0.0.1:8201".to_owned()],
                primary_api_addr: "https://127.0.0.1:8200".to_owned(),
                ca_cert_der: self.ca.cert_der().to_vec(),
                primary_cert_der: self.primary.cert_der.clone(),
                secondary_cert_der: issued.cert_der,
                secondary_key: None,
                epoch: Epoch {
                    number: 1,
                    cluster_id: CLUSTER_ID.to_owned(),
                },
                epoch_start: None,
            };
            TestSecondary {
                bundle,
                key: issued.key.unwrap(),
                serial: issued.serial,
            }
        }
    }

    impl TestSecondary {
        pub(crate) fn connector(&self) -> ClusterConnector {
            ClusterConnector::new(&self.bundle, &self.key)
                .unwrap()
                .with_handshake_timeout(Duration::from_secs(5))
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;
    use tokio::io::DuplexStream;

    use super::testing::{CLUSTER_ID, TestCluster, now};
    use super::*;

    type Outcome = (
        Result<AcceptedConnection<DuplexStream>, ClusterTlsError>,
        Result<client::TlsStream<DuplexStream>, ClusterTlsError>,
    );

    async fn handshake(
        acceptor: &ClusterAcceptor,
        connector: &ClusterConnector,
        alpn: ClusterAlpn,
    ) -> Outcome {
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(client_io, alpn)
        )
    }

    /// Runs the handshake from a rustls client that offers `alpn` as is.
    async fn handshake_offering(
        acceptor: &ClusterAcceptor,
        connector: &ClusterConnector,
        alpn: Vec<Vec<u8>>,
    ) -> (
        Result<AcceptedConnection<DuplexStream>, ClusterTlsError>,
        io::Result<client::TlsStream<DuplexStream>>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let name = connector.server_name.clone();
        tokio::join!(
            acceptor.accept(server_io),
            connector.connector.with_alpn(alpn).connect(name, client_io)
        )
    }

    fn expect_alert(result: io::Result<client::TlsStream<DuplexStream>>, alert: AlertDescription) {
        let error = result.unwrap_err();
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        assert_eq!(tls, Some(&rustls::Error::AlertReceived(alert)), "{error}");
    }

    #[tokio::test]
    async fn handshake_yields_secondary_peer() {
        let mut cluster = TestCluster::new(1);
        let secondary = cluster.secondary("east");
        let (accepted, connected) = handshake(
            &cluster.acceptor(),
            &secondary.connector(),
            ClusterAlpn::Replication,
        )
        .await;

        let mut accepted = accepted.unwrap();
        let mut connected = connected.unwrap();
        assert_eq!(accepted.alpn, ClusterAlpn::Replication);
        assert_eq!(accepted.peer.secondary.secondary_id, "east");
        assert_eq!(accepted.peer.secondary.serial, secondary.serial);
        assert_eq!(
            &accepted.peer.public_key,
            secondary.key.public_key().as_bytes()
        );

        connected.write_all(b"ping").await.unwrap();
        connected.flush().await.unwrap();
        let mut received = [0u8; 4];
        accepted.stream.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"ping");
    }

    #[tokio::test]
    async fn forwarding_alpn_is_negotiated() {
        let mut cluster = TestCluster::new(2);
        let secondary = cluster.secondary("east");
        let (accepted, connected) = handshake(
            &cluster.acceptor(),
            &secondary.connector(),
            ClusterAlpn::Forwarding,
        )
        .await;
        assert_eq!(accepted.unwrap().alpn, ClusterAlpn::Forwarding);
        let connected = connected.unwrap();
        assert_eq!(connected.get_ref().1.alpn_protocol(), Some(FORWARDING_ALPN));
    }

    #[tokio::test]
    async fn self_generated_secondary_key_is_accepted() {
        let mut cluster = TestCluster::new(3);
        let mut rng = ChaCha20Rng::seed_from_u64(30);
        let key = PrivateKey::generate(&mut rng);
        let issued = cluster
            .ca
            .certify_secondary_key(&mut rng, now(), "west", &key.public_key())
            .unwrap();
        let mut secondary = cluster.inactive_secondary("west");
        secondary.bundle.secondary_cert_der = issued.cert_der;
        cluster
            .active
            .replace([("west".to_owned(), issued.serial.clone())]);
        let connector = ClusterConnector::new(&secondary.bundle, &key).unwrap();

        let (accepted, connected) =
            handshake(&cluster.acceptor(), &connector, ClusterAlpn::Replication).await;
        assert!(connected.is_ok(), "{:?}", connected.err());
        let accepted = accepted.unwrap();
        assert_eq!(accepted.peer.secondary.serial, issued.serial);
        assert_eq!(&accepted.peer.public_key, key.public_key().as_bytes());
    }

    #[tokio::test]
    async fn inactive_serial_is_rejected() {
        let mut cluster = TestCluster::new(4);
        let secondary = cluster.inactive_secondary("east");
        let (accepted, connected) = handshake(
            &cluster.acceptor(),
            &secondary.connector(),
            ClusterAlpn::Replication,
        )
        .await;

        let server_error = accepted.unwrap_err();
        assert!(
            matches!(
                &server_error,
                ClusterTlsError::Rejected(CertRejection::NotActive { secondary_id, serial })
                    if secondary_id == "east" && *serial == secondary.serial
            ),
            "{server_error}"
        );
        let client_error = connected.unwrap_err();
        assert!(
            matches!(
                client_error,
                ClusterTlsError::AlertReceived {
                    peer: PeerRole::Primary,
                    alert: AlertDescription::CertificateUnknown,
                }
            ),
            "{client_error}"
        );
        assert!(
            client_error.to_string().contains("may be revoked"),
            "{client_error}"
        );
    }

    #[tokio::test]
    async fn revocation_after_build_is_enforced() {
        let mut cluster = TestCluster::new(5);
        let secondary = cluster.secondary("east");
        let acceptor = cluster.acceptor();
        let connector = secondary.connector();
        let (accepted, _) = handshake(&acceptor, &connector, ClusterAlpn::Replication).await;
        assert!(accepted.is_ok(), "{:?}", accepted.err());

        cluster.active.replace([]);
        let (accepted, connected) =
            handshake(&acceptor, &connector, ClusterAlpn::Replication).await;
        assert!(
            matches!(
                accepted,
                Err(ClusterTlsError::Rejected(CertRejection::NotActive { .. }))
            ),
            "{:?}",
            accepted.err()
        );
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn replaced_certificate_is_rejected() {
        let mut cluster = TestCluster::new(6);
        let old = cluster.inactive_secondary("east");
        let new = cluster.secondary("east");
        let acceptor = cluster.acceptor();

        let (accepted, _) = handshake(&acceptor, &old.connector(), ClusterAlpn::Replication).await;
        assert!(matches!(
            accepted,
            Err(ClusterTlsError::Rejected(CertRejection::NotActive { .. }))
        ));
        let (accepted, _) = handshake(&acceptor, &new.connector(), ClusterAlpn::Replication).await;
        assert!(accepted.is_ok(), "{:?}", accepted.err());
    }

    #[tokio::test]
    async fn unknown_alpn_is_rejected_naming_it() {
        let mut cluster = TestCluster::new(7);
        let secondary = cluster.secondary("east");
        let offered = vec![b"h2".to_vec(), b"coffer-replication-v9".to_vec()];
        let (accepted, connected) =
            handshake_offering(&cluster.acceptor(), &secondary.connector(), offered).await;

        let server_error = accepted.unwrap_err().to_string();
        assert!(
            server_error.contains(r#""h2", "coffer-replication-v9""#),
            "{server_error}"
        );
        expect_alert(connected, AlertDescription::NoApplicationProtocol);
    }

    #[tokio::test]
    async fn missing_alpn_is_rejected() {
        let mut cluster = TestCluster::new(8);
        let secondary = cluster.secondary("east");
        let (accepted, connected) =
            handshake_offering(&cluster.acceptor(), &secondary.connector(), Vec::new()).await;

        assert!(
            matches!(accepted, Err(ClusterTlsError::MissingAlpn)),
            "{:?}",
            accepted.err()
        );
        expect_alert(connected, AlertDescription::NoApplicationProtocol);
    }

    #[test]
    fn offered_alpn_list_is_truncated() {
        let protocols: Vec<Vec<u8>> = (0..20).map(|i| format!("p{i}").into_bytes()).collect();
        let offered: Vec<&[u8]> = protocols.iter().map(Vec::as_slice).collect();
        let described = describe_protocols(&offered);
        assert!(described.starts_with(r#""p0", "p1""#), "{described}");
        assert!(described.ends_with(r#""p7", and 12 more"#), "{described}");
    }

    #[tokio::test]
    async fn secondary_cert_posing_as_primary_is_rejected() {
        let mut cluster = TestCluster::new(9);
        let secondary = cluster.secondary("east");
        let impostor = cluster.secondary("mallory");
        let config = ServerConfig::builder_with_provider(TlsCrypto::default().provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(
                    impostor.bundle.secondary_cert_der.clone(),
                )],
                private_key_der(&impostor.key),
            )
            .unwrap();
        let mut config = config;
        config.alpn_protocols = vec![REPLICATION_ALPN.to_vec()];
        let server = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let connector = secondary.connector();
        let (_, connected) = tokio::join!(
            server.accept(server_io),
            connector.connect(client_io, ClusterAlpn::Replication)
        );
        let error = connected.unwrap_err();
        assert!(
            matches!(
                error,
                ClusterTlsError::InvalidCertificate {
                    peer: PeerRole::Primary,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("server"), "{error}");
    }

    #[tokio::test]
    async fn acceptor_rejects_secondary_cert_as_its_own() {
        let mut cluster = TestCluster::new(10);
        let secondary = cluster.secondary("east");
        let built = ClusterAcceptor::new(
            cluster.ca.cert_der(),
            &secondary.bundle.secondary_cert_der,
            &secondary.key,
            CLUSTER_ID,
            cluster.active.clone(),
        );
        let error = built.unwrap_err().to_string();
        assert!(error.contains("serverAuth"), "{error}");
    }

    #[tokio::test]
    async fn primary_cert_as_client_is_rejected() {
        let mut cluster = TestCluster::new(11);
        let secondary = cluster.secondary("east");
        let connector = ClusterConnector::build(
            &secondary.bundle,
            &cluster.primary.cert_der,
            cluster.primary_key(),
            &TlsCrypto::default(),
        )
        .unwrap();
        let (accepted, connected) =
            handshake(&cluster.acceptor(), &connector, ClusterAlpn::Replication).await;

        let server_error = accepted.unwrap_err();
        assert!(
            matches!(
                server_error,
                ClusterTlsError::InvalidCertificate {
                    peer: PeerRole::Secondary,
                    ..
                } | ClusterTlsError::Rejected(CertRejection::NotSecondary(_))
            ),
            "{server_error}"
        );
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn connector_rejects_primary_cert_in_bundle() {
        let mut cluster = TestCluster::new(12);
        let mut secondary = cluster.secondary("east");
        secondary.bundle.secondary_cert_der = cluster.primary.cert_der.clone();
        let error = ClusterConnector::new(&secondary.bundle, cluster.primary_key())
            .unwrap_err()
            .to_string();
        assert!(error.contains("clientAuth"), "{error}");
    }

    #[tokio::test]
    async fn connector_rejects_key_of_another_cert() {
        let mut cluster = TestCluster::new(13);
        let east = cluster.secondary("east");
        let west = cluster.secondary("west");
        let error = ClusterConnector::new(&east.bundle, &west.key).unwrap_err();
        assert!(
            matches!(error, ClusterTlsError::Credentials { .. }),
            "{error}"
        );
    }

    #[tokio::test]
    async fn secondary_of_another_ca_is_rejected() {
        let cluster = TestCluster::new(14);
        let mut other = TestCluster::new(15);
        let stranger = other.secondary("east");
        // The active set contains the stranger's id and serial, so only the chain check can reject.
        // Both CAs have the same subject name, so WebPKI finds an issuer and fails its signature.
        cluster
            .active
            .replace([("east".to_owned(), stranger.serial.clone())]);
        let mut bundle = stranger.bundle.clone();
        bundle.ca_cert_der = cluster.ca.cert_der().to_vec();
        bundle.primary_cert_der = cluster.primary.cert_der.clone();
        let connector = ClusterConnector::new(&bundle, &stranger.key).unwrap();

        let (accepted, connected) =
            handshake(&cluster.acceptor(), &connector, ClusterAlpn::Replication).await;
        let server_error = accepted.unwrap_err();
        assert!(
            matches!(
                &server_error,
                ClusterTlsError::InvalidCertificate {
                    peer: PeerRole::Secondary,
                    error: rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                }
            ),
            "{server_error}"
        );
        assert!(connected.is_err());
    }

    #[tokio::test]
    async fn primary_of_another_ca_is_rejected() {
        let mut cluster = TestCluster::new(16);
        let other = TestCluster::new(17);
        let secondary = cluster.secondary("east");
        // Both CAs have the same subject name, so WebPKI finds an issuer and fails its signature.
        let (accepted, connected) = handshake(
            &other.acceptor(),
            &secondary.connector(),
            ClusterAlpn::Replication,
        )
        .await;
        let client_error = connected.unwrap_err();
        assert!(
            matches!(
                &client_error,
                ClusterTlsError::InvalidCertificate {
                    peer: PeerRole::Primary,
                    error: rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                }
            ),
            "{client_error}"
        );
        assert!(accepted.is_err());
    }

    #[tokio::test]
    async fn unpinned_primary_cert_is_rejected() {
        let mut cluster = TestCluster::new(18);
        let secondary = cluster.secondary("east");
        // A second certificate from the same CA passes every check but the pin.
        let mut rng = ChaCha20Rng::seed_from_u64(180);
        let reissued = cluster
            .ca
            .issue_primary_cert(&mut rng, now(), &["127.0.0.1:8201"])
            .unwrap();
        let acceptor = ClusterAcceptor::new(
            cluster.ca.cert_der(),
            &reissued.cert_der,
            reissued.key.as_ref().unwrap(),
            CLUSTER_ID,
            cluster.active.clone(),
        )
        .unwrap();

        let (accepted, connected) =
            handshake(&acceptor, &secondary.connector(), ClusterAlpn::Replication).await;
        let client_error = connected.unwrap_err();
        assert!(
            matches!(
                client_error,
                ClusterTlsError::Rejected(CertRejection::PinMismatch)
            ),
            "{client_error}"
        );
        assert_eq!(
            client_error.to_string(),
            "the primary's certificate does not match the pinned one"
        );
        assert!(accepted.is_err());
    }

    #[test]
    fn acceptor_rejects_primary_cert_of_another_cluster() {
        let cluster = TestCluster::new(19);
        let built = ClusterAcceptor::new(
            cluster.ca.cert_der(),
            &cluster.primary.cert_der,
            cluster.primary_key(),
            "c2",
            cluster.active.clone(),
        );
        let error = built.unwrap_err().to_string();
        assert!(error.contains("primary.c2.coffer"), "{error}");
    }

    #[tokio::test]
    async fn rejection_reads_as_not_primary() {
        let mut cluster = TestCluster::new(20);
        let secondary = cluster.secondary("east");
        let (client_io, server_io) = tokio::io::duplex(64 << 10);
        let connector = secondary.connector();
        let (rejected, connected) = tokio::join!(
            reject_not_primary(server_io),
            connector.connect(client_io, ClusterAlpn::Replication)
        );
        assert!(rejected.is_ok(), "{:?}", rejected.err());
        assert!(
            matches!(connected, Err(ClusterTlsError::NotPrimary)),
            "{:?}",
            connected.err()
        );
    }

    #[tokio::test]
    async fn silent_primary_times_out() {
        let mut cluster = TestCluster::new(21);
        let secondary = cluster.secondary("east");
        let connector = secondary
            .connector()
            .with_handshake_timeout(Duration::from_millis(100));
        let (client_io, _server_io) = tokio::io::duplex(64 << 10);
        let connected = connector.connect(client_io, ClusterAlpn::Replication).await;
        assert!(
            matches!(connected, Err(ClusterTlsError::Timeout { .. })),
            "{:?}",
            connected.err()
        );
    }

    #[tokio::test]
    async fn revoked_waits_until_removal() {
        let active = ActiveCerts::new([("east".to_owned(), "01".to_owned())]);
        let peer = SecondaryPeer {
            secondary_id: "east".to_owned(),
            serial: "01".to_owned(),
        };
        let pending = tokio::time::timeout(Duration::from_millis(50), active.revoked(&peer)).await;
        assert!(pending.is_err(), "an active certificate is not revoked");

        let remover = active.clone();
        tokio::spawn(async move { remover.replace([]) });
        let revoked = tokio::time::timeout(Duration::from_secs(5), active.revoked(&peer)).await;
        assert!(revoked.is_ok());
        assert!(!active.is_active("east", "01"));
    }
}
