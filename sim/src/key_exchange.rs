//! X25519 key exchange for rustls with ephemeral private keys drawn from the thread's seeded
//! TLS random stream, so that the key shares of a handshake repeat with the seed.

use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use x25519_dalek::{EphemeralSecret, PublicKey};

use crate::environment::with_tls_random;

/// The X25519 group with seeded ephemeral keys, the only key-exchange group of
/// [`crate::environment::seeded_provider`].
pub static SEEDED_X25519: &dyn SupportedKxGroup = &SeededX25519;

/// X25519 (RFC 7748) whose ephemeral secrets come from the seeded TLS random stream.
#[derive(Debug)]
struct SeededX25519;

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret = with_tls_random(|rng| EphemeralSecret::random_from_rng(rng));
        let public = PublicKey::from(&secret);
        Ok(Box::new(ActiveX25519 { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One started X25519 exchange: the ephemeral secret and the key share sent to the peer.
struct ActiveX25519 {
    secret: EphemeralSecret,
    public: PublicKey,
}

impl ActiveKeyExchange for ActiveX25519 {
    /// Completes the exchange. A key share that is not 32 bytes, or a low-order point that
    /// makes the shared secret all zeros, is rejected as an invalid key share.
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| PeerMisbehaved::InvalidKeyShare)?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(shared.as_bytes().as_slice()))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::seed_tls_random;

    fn key_share(seed: u64) -> Vec<u8> {
        seed_tls_random(seed);
        let exchange = SEEDED_X25519.start().expect("X25519 starts");
        exchange.pub_key().to_vec()
    }

    #[test]
    fn key_share_repeats_with_seed() {
        assert_eq!(key_share(11), key_share(11));
    }

    #[test]
    fn key_share_changes_with_seed() {
        assert_ne!(key_share(11), key_share(12));
    }

    #[test]
    fn both_sides_derive_same_secret() {
        seed_tls_random(11);
        let client = SEEDED_X25519.start().expect("X25519 starts");
        let server = SEEDED_X25519.start().expect("X25519 starts");
        assert_ne!(client.pub_key(), server.pub_key());
        let server_share = server.pub_key().to_vec();
        let client_share = client.pub_key().to_vec();
        let client_secret = client.complete(&server_share).expect("the share is valid");
        let server_secret = server.complete(&client_share).expect("the share is valid");
        assert_eq!(client_secret.secret_bytes(), server_secret.secret_bytes());
        assert_eq!(client_secret.secret_bytes().len(), 32);
    }

    #[test]
    fn short_key_share_is_rejected() {
        seed_tls_random(11);
        let exchange = SEEDED_X25519.start().expect("X25519 starts");
        let error = exchange.complete(&[9; 31]).err();
        assert_eq!(error, Some(PeerMisbehaved::InvalidKeyShare.into()));
    }

    #[test]
    fn low_order_key_share_is_rejected() {
        seed_tls_random(11);
        let exchange = SEEDED_X25519.start().expect("X25519 starts");
        // u = 0 is a low-order point, so the shared secret with it is all zeros.
        let error = exchange.complete(&[0; 32]).err();
        assert_eq!(error, Some(PeerMisbehaved::InvalidKeyShare.into()));
    }
}
