//! The third step of secondary activation: one mutually authenticated connection to the
//! primary's cluster port, which proves both ends and brings back the key material the
//! primary sealed to this secondary's key.

use std::net::SocketAddr;
use std::time::Duration;

use coffer_core::replication::ReplicationConfig;
use coffer_core::replication::activation::{BootstrapBundle, PrivateKey};
use coffer_core::replication::frame::{FrameDecoder, FrameLimits, encode_message};
use coffer_core::replication::keys::KeyOffer;
use coffer_core::replication::message::Message;
use coffer_core::replication::position::{Epoch, Position};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::cluster::{ClusterAlpn, ClusterConnector, TlsCrypto};
use crate::server::net::Network;

/// How long the primary may take to send its key offer after the handshake.
const OFFER_TIMEOUT: Duration = Duration::from_secs(15);

/// Rounds over the bundle's addresses before giving up, and the pause between rounds: a
/// primary enabled a moment ago may not have opened its cluster port to secondaries yet.
const ROUNDS: usize = 3;
const ROUND_PAUSE: Duration = Duration::from_millis(500);

/// A failure to use the cluster port. Each message names the address it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The bundle lists no address to dial.
    #[error(
        "the bootstrap bundle lists no primary cluster address; set cluster_addr on the primary"
    )]
    NoAddress,
    /// A cluster address does not parse.
    #[error("invalid primary cluster address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// The problem with the address.
        reason: String,
    },
    /// Every address failed; the last failure is kept.
    #[error("{0}")]
    Failed(String),
}

/// Dials the bundle's cluster addresses in order and returns the first key offer received.
pub async fn fetch_key_offer<N: Network>(
    network: &N,
    bundle: &BootstrapBundle,
    key: &PrivateKey,
    crypto: &TlsCrypto,
) -> Result<KeyOffer, ProbeError> {
    let connector = ClusterConnector::with_crypto(bundle, key, crypto)
        .map_err(|error| ProbeError::Failed(format!("the bundle's credentials: {error}")))?;
    let mut last = ProbeError::NoAddress;
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        for address in &bundle.primary_cluster_addrs {
            let socket = parse_cluster_addr(address)?;
            match offer_from(network, &connector, bundle, socket).await {
                Ok(offer) => return Ok(offer),
                // A primary enabled a moment ago may not serve its cluster port yet, so
                // only the last round's failures are warnings.
                Err(reason) if round + 1 < ROUNDS => {
                    tracing::info!(%address, %reason, "the primary's cluster port failed during activation; retrying");
                    last = ProbeError::Failed(format!("{address}: {reason}"));
                }
                Err(reason) => {
                    tracing::warn!(%address, %reason, "the primary's cluster port failed during activation");
                    last = ProbeError::Failed(format!("{address}: {reason}"));
                }
            }
        }
    }
    Err(last)
}

/// Parses `https://host:port` or `host:port` with an IP host.
pub fn parse_cluster_addr(address: &str) -> Result<SocketAddr, ProbeError> {
    let bare = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("tcp://"))
        .unwrap_or(address)
        .trim_end_matches('/');
    bare.parse().map_err(|_| ProbeError::InvalidAddress {
        address: address.to_owned(),
        reason: "give it as https://IP:port".to_owned(),
    })
}

async fn offer_from<N: Network>(
    network: &N,
    connector: &ClusterConnector,
    bundle: &BootstrapBundle,
    socket: SocketAddr,
) -> Result<KeyOffer, String> {
    let stream = network
        .connect(socket)
        .await
        .map_err(|error| format!("unreachable: {error}"))?;
    let mut tls = connector
        .connect(stream, ClusterAlpn::Replication)
        .await
        .map_err(|error| format!("TLS failed: {error}"))?;
    let config = ReplicationConfig::default();
    let limits = FrameLimits {
        max_frame_payload: config.max_frame_payload,
        max_message_size: config.max_message_size,
    };
    // The probe requests no data, so it reports the empty position and root.
    let hello = Message::Hello {
        cluster_id: bundle.cluster_id.clone(),
        secondary_id: bundle.secondary_id.clone(),
        position: Position::genesis(Epoch::new(0, "")),
        root: [0; 32],
    };
    for frame in encode_message(&hello, limits).map_err(|error| error.to_string())? {
        tls.write_all(&frame)
            .await
            .map_err(|error| format!("sending hello failed: {error}"))?;
    }
    tls.flush()
        .await
        .map_err(|error| format!("sending hello failed: {error}"))?;
    let offer = tokio::time::timeout(OFFER_TIMEOUT, read_offer(&mut tls, limits))
        .await
        .map_err(|_| format!("no key offer within {} s", OFFER_TIMEOUT.as_secs()))??;
    let goodbye = Message::Goodbye {
        reason: "activation probe done".to_owned(),
    };
    if let Ok(frames) = encode_message(&goodbye, limits) {
        for frame in frames {
            let _ = tls.write_all(&frame).await;
        }
    }
    let _ = tls.shutdown().await;
    Ok(offer)
}

async fn read_offer<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    limits: FrameLimits,
) -> Result<KeyOffer, String> {
    let mut decoder = FrameDecoder::new(limits);
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        while let Some(message) = decoder
            .poll_message()
            .map_err(|error| format!("the primary sent a bad frame: {error}"))?
        {
            match message {
                Message::KeyOffer(offer) => return Ok(offer),
                Message::Error { code, message } => {
                    return Err(format!("the primary refused: {code:?}: {message}"));
                }
                Message::Goodbye { reason } => {
                    return Err(format!("the primary closed the connection: {reason}"));
                }
                _ => {}
            }
        }
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| format!("reading failed: {error}"))?;
        if read == 0 {
            return Err("the primary closed the connection before sending a key offer".to_owned());
        }
        decoder.push(&buffer[..read]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_addresses_parse_with_or_without_scheme() {
        let expected: SocketAddr = "127.0.0.1:8201".parse().unwrap();
        assert_eq!(
            parse_cluster_addr("https://127.0.0.1:8201").unwrap(),
            expected
        );
        assert_eq!(parse_cluster_addr("127.0.0.1:8201").unwrap(), expected);
        let error = parse_cluster_addr("https://primary:8201").unwrap_err();
        assert!(error.to_string().contains("https://IP:port"), "{error}");
    }
}
