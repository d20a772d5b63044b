//! Random identifiers drawn from the caller's RNG.

use rand_core::CryptoRngCore;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random UUID (version 4 layout), such as a request id or a mount's `uuid`.
pub fn uuid(rng: &mut dyn CryptoRngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `length` random base62 characters, drawn without modulo bias.
pub fn base62(rng: &mut dyn CryptoRngCore, length: usize) -> String {
    let mut out = String::with_capacity(length);
    while out.len() < length {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        // 248 is the largest multiple of 62 that fits in a byte; rejecting above it keeps
        // every character equally likely.
        if byte[0] < 248 {
            out.push(char::from(BASE62[usize::from(byte[0] % 62)]));
        }
    }
    out
}

/// `N` random bytes.
pub fn bytes<const N: usize>(rng: &mut dyn CryptoRngCore) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn uuid_has_version_four_layout() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn base62_has_requested_length() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let text = base62(&mut rng, 24);
        assert_eq!(text.len(), 24);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
