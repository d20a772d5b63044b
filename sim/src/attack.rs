//! Attacks on activation tokens and the cluster port: tampered and re-signed JWTs, an
//! unwrapped bundle, and cluster connections with chosen credentials and ALPN.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coffer_core::replication::activation::{BootstrapBundle, decode_bundle};
use coffer_io::server::cluster::{ClusterAlpn, ClusterConnector};
use coffer_io::server::{Environment, Network};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::client::ApiClient;
use crate::environment::{SimEnvironment, seeded_crypto, seeded_provider};
use crate::harness::CLUSTER_PORT;
use crate::network::SimNetwork;

/// Returns the claims of a compact JWT, without checking its signature.
pub fn jwt_claims(token: &str) -> anyhow::Result<Value> {
    let payload = token.split('.').nth(1).context("the token is not a JWT")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .context("the JWT payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the JWT payload is not JSON")
}

/// Returns `token` with its claims changed by `edit` and its original signature kept.
pub fn tamper_claims(token: &str, edit: impl FnOnce(&mut Value)) -> anyhow::Result<String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, _, signature] = parts.as_slice() else {
        bail!("the token is not a three-part JWT");
    };
    let mut claims = jwt_claims(token)?;
    edit(&mut claims);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    Ok(format!("{header}.{payload}.{signature}"))
}

/// Returns `token` with its claims changed by `edit` and signed again, EdDSA, with a key the
/// attacker made from `seed`.
pub fn resign_claims(
    token: &str,
    seed: [u8; 32],
    edit: impl FnOnce(&mut Value),
) -> anyhow::Result<String> {
    let tampered = tamper_claims(token, edit)?;
    let signing_input = tampered
        .rsplit_once('.')
        .map(|(input, _)| input.to_owned())
        .context("the token has no signature part")?;
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed)
        .map_err(|error| anyhow::anyhow!("the attacker's key is invalid: {error}"))?;
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()).as_ref());
    Ok(format!("{signing_input}.{signature}"))
}

/// Unwraps an activation token at `primary` as an attacker who stole it would, and returns
/// the bootstrap bundle.
pub async fn unwrap_bundle(primary: &ApiClient, token: &str) -> anyhow::Result<BootstrapBundle> {
    let response = primary
        .with_token(token)
        .post("sys/wrapping/unwrap", &serde_json::json!({}))
        .await?;
    if response.status != 200 {
        bail!(
            "unwrap failed with {}: {}",
            response.status,
            response.errors()
        );
    }
    let bytes = serde_json::to_vec(&response.body["data"])?;
    decode_bundle(&bytes)
        .map_err(|error| anyhow::anyhow!("the unwrapped bundle is invalid: {error}"))
}

/// Opens a replication connection to `host`'s cluster port with `bundle`'s credentials, as a
/// secondary would, and returns the error when the connection is refused.
pub async fn connect_with_bundle(bundle: &BootstrapBundle, host: &str) -> anyhow::Result<()> {
    let key = bundle
        .secondary_key
        .clone()
        .context("the bundle carries no private key")?;
    let crypto = SimEnvironment::new(0, "attacker", 0).tls_crypto();
    let connector = ClusterConnector::with_crypto(bundle, &key, &crypto)?;
    let address = SocketAddr::new(turmoil::lookup(host), CLUSTER_PORT);
    let stream = SimNetwork.connect(address).await?;
    let connected = connector.connect(stream, ClusterAlpn::Replication).await?;
    drop(connected);
    Ok(())
}

/// Opens a TLS connection to `host`'s cluster port offering the protocols `alpn` (no ALPN
/// extension when empty), without checking the server's certificate, and returns the
/// handshake's error.
pub async fn connect_with_alpn(host: &str, alpn: &[&[u8]]) -> anyhow::Result<()> {
    let crypto = seeded_crypto();
    let mut config = ClientConfig::builder_with_details(crypto.provider, crypto.time)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    let address = SocketAddr::new(turmoil::lookup(host), CLUSTER_PORT);
    let stream = SimNetwork.connect(address).await?;
    let name = ServerName::IpAddress(address.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await?;
    Ok(())
}

/// A verifier that accepts any server, so that the attacker reaches the server's own checks.
#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        seeded_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
