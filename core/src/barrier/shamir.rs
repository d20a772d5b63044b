//! Shamir secret sharing of the root key over GF(2^8).
//!
//! Each byte of the secret is the constant term of its own random polynomial of degree
//! `threshold - 1`; a share is that polynomial family evaluated at one nonzero x-coordinate.
//! As in Vault, a share is encoded as the evaluated bytes followed by one byte holding x, so a
//! share of the 32-byte root key is 33 bytes long.
//!
//! The field is GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1. Field
//! multiplication uses no lookup tables and no data-dependent branches, so its timing does not
//! depend on the share bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes in the root key that the shares protect.
pub const ROOT_KEY_LEN: usize = 32;

/// Bytes in one encoded share: the key's length plus the x-coordinate byte.
pub const SHARE_LEN: usize = ROOT_KEY_LEN + 1;

/// The maximum number of shares: every nonzero x-coordinate in GF(2^8).
pub const MAX_SHARES: u8 = 255;

/// The reason shares could not be made, decoded or combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// The share count or threshold is out of range.
    #[error(
        "invalid share settings: {shares} shares with threshold {threshold}; the threshold must \
         be between 2 and the number of shares (at most 255), or both must be 1"
    )]
    InvalidSettings {
        /// The requested number of shares.
        shares: u8,
        /// The requested threshold.
        threshold: u8,
    },
    /// The text is neither hex nor base64.
    #[error("invalid key: the value is neither hex nor base64")]
    Encoding,
    /// The decoded share has the wrong length.
    #[error("invalid key: it decodes to {0} bytes, but a key share is {SHARE_LEN} bytes")]
    Length(usize),
    /// The share's x-coordinate is zero, which would reveal the secret and never occurs.
    #[error("invalid key: its x-coordinate byte is 0, which no key share uses")]
    ZeroCoordinate,
    /// Two shares have the same x-coordinate.
    #[error("two keys have the same x-coordinate {0}; submit distinct keys")]
    DuplicateCoordinate(u8),
    /// No shares were given.
    #[error("no key shares were given")]
    Empty,
}

/// One share of the root key. `Debug` prints only the x-coordinate, the bytes are zeroed on
/// drop, and equality is checked in constant time.
#[derive(Clone)]
pub struct Share(Zeroizing<Vec<u8>>);

impl Share {
    /// Checks and wraps the bytes of an encoded share.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Share, ShamirError> {
        if bytes.len() != SHARE_LEN {
            return Err(ShamirError::Length(bytes.len()));
        }
        if bytes[ROOT_KEY_LEN] == 0 {
            return Err(ShamirError::ZeroCoordinate);
        }
        Ok(Share(bytes))
    }

    /// The share's x-coordinate, never zero.
    pub fn x(&self) -> u8 {
        self.0[ROOT_KEY_LEN]
    }

    /// The encoded bytes: the evaluated points, then the x-coordinate.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The share in lower-case hex, as `sys/init` returns it in `keys`.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.as_bytes()))
    }

    /// The share in padded standard base64, as `sys/init` returns it in `keys_base64`.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.as_bytes()))
    }

    fn y(&self) -> &[u8] {
        &self.0[..ROOT_KEY_LEN]
    }
}

impl PartialEq for Share {
    fn eq(&self, other: &Share) -> bool {
        self.as_bytes().ct_eq(other.as_bytes()).into()
    }
}

impl Eq for Share {}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Share(x = {}, ..)", self.x())
    }
}

/// Decodes a key share sent by a client, in hex or in base64 (padded or not).
///
/// Hex is tried first, as Vault does, because every hex string is also valid base64 text.
pub fn decode_share(text: &str) -> Result<Share, ShamirError> {
    let text = text.trim();
    let bytes = decode_hex(text)
        .or_else(|| decode_base64(text))
        .ok_or(ShamirError::Encoding)?;
    Share::from_bytes(bytes)
}

/// Splits `secret` into `shares` shares, any `threshold` of which rebuild it.
///
/// The threshold must be at least 2 and at most `shares`, except that a single share with
/// threshold 1 is allowed. That share then contains the secret itself under one x-coordinate.
pub fn split(
    secret: &[u8; ROOT_KEY_LEN],
    shares: u8,
    threshold: u8,
    rng: &mut dyn CryptoRngCore,
) -> Result<Vec<Share>, ShamirError> {
    check_settings(shares, threshold)?;
    let xs = distinct_coordinates(shares, rng);
    let mut coefficients = Zeroizing::new(vec![0u8; usize::from(threshold)]);
    let mut points = vec![Zeroizing::new(vec![0u8; SHARE_LEN]); usize::from(shares)];
    for (byte_index, secret_byte) in secret.iter().enumerate() {
        coefficients[0] = *secret_byte;
        rng.fill_bytes(&mut coefficients[1..]);
        for (point, x) in points.iter_mut().zip(&xs) {
            point[byte_index] = evaluate(&coefficients, *x);
        }
    }
    points
        .into_iter()
        .zip(xs)
        .map(|(mut point, x)| {
            point[ROOT_KEY_LEN] = x;
            Share::from_bytes(point)
        })
        .collect()
}

/// Rebuilds the secret from shares by Lagrange interpolation at x = 0.
///
/// Any set of at least `threshold` distinct shares gives the secret. Fewer shares give an
/// unrelated value, which nothing here can detect: callers authenticate the result by
/// decrypting the keyring with it.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<[u8; ROOT_KEY_LEN]>, ShamirError> {
    if shares.is_empty() {
        return Err(ShamirError::Empty);
    }
    check_distinct(shares)?;
    let mut secret = Zeroizing::new([0u8; ROOT_KEY_LEN]);
    for (i, share) in shares.iter().enumerate() {
        let basis = lagrange_basis_at_zero(shares, i);
        for (out, y) in secret.iter_mut().zip(share.y()) {
            *out ^= mul(*y, basis);
        }
    }
    Ok(secret)
}

/// Checks the share count and threshold that `split` accepts.
pub fn check_settings(shares: u8, threshold: u8) -> Result<(), ShamirError> {
    let single = shares == 1 && threshold == 1;
    let valid = threshold >= 2 && threshold <= shares;
    if single || valid {
        Ok(())
    } else {
        Err(ShamirError::InvalidSettings { shares, threshold })
    }
}

fn check_distinct(shares: &[Share]) -> Result<(), ShamirError> {
    let mut seen = [false; 256];
    for share in shares {
        let slot = &mut seen[usize::from(share.x())];
        if *slot {
            return Err(ShamirError::DuplicateCoordinate(share.x()));
        }
        *slot = true;
    }
    Ok(())
}

/// Computes the product over j != i of x_j / (x_j - x_i). Subtraction in GF(2^8) is XOR.
fn lagrange_basis_at_zero(shares: &[Share], i: usize) -> u8 {
    let xi = shares[i].x();
    let mut basis = 1u8;
    for (j, other) in shares.iter().enumerate() {
        if j != i {
            let xj = other.x();
            basis = mul(basis, mul(xj, inverse(xj ^ xi)));
        }
    }
    basis
}

/// `shares` distinct nonzero x-coordinates in random order: a partial Fisher-Yates shuffle.
fn distinct_coordinates(shares: u8, rng: &mut dyn CryptoRngCore) -> Vec<u8> {
    let mut pool: Vec<u8> = (1..=MAX_SHARES).collect();
    for i in 0..usize::from(shares) {
        let remaining = pool.len() - i;
        let pick = i + uniform_below(rng, remaining);
        pool.swap(i, pick);
    }
    pool.truncate(usize::from(shares));
    pool
}

/// Draws a uniform value in `0..bound` for `1 <= bound <= 256`, by rejection sampling.
fn uniform_below(rng: &mut dyn CryptoRngCore, bound: usize) -> usize {
    let zone = 256 - 256 % bound;
    loop {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        let value = usize::from(byte[0]);
        if value < zone {
            return value % bound;
        }
    }
}

/// Evaluates the polynomial with these coefficients (constant term first) at `x`, by Horner.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, coefficient| mul(acc, x) ^ coefficient)
}

/// Multiplication in GF(2^8) without tables or branches on the operands.
fn mul(a: u8, b: u8) -> u8 {
    let mut a = a;
    let mut b = b;
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & (b & 1).wrapping_neg();
        let overflow = (a >> 7).wrapping_neg();
        a = (a << 1) ^ (0x1b & overflow);
        b >>= 1;
    }
    product
}

/// Computes the multiplicative inverse as a^254, so the inverse of 0 comes out as 0.
fn inverse(a: u8) -> u8 {
    // 254 = 0b1111_1110: the exponent is a public constant, so branching on its bits leaks
    // nothing about `a`.
    let mut result = 1u8;
    for bit in (0..8).rev() {
        result = mul(result, result);
        if (254u8 >> bit) & 1 == 1 {
            result = mul(result, a);
        }
    }
    result
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    hex::decode(text).ok().map(Zeroizing::new)
}

fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;

    fn secret(rng: &mut ChaCha20Rng) -> [u8; ROOT_KEY_LEN] {
        let mut secret = [0u8; ROOT_KEY_LEN];
        rng.fill_bytes(&mut secret);
        secret
    }

    /// Every subset of `0..n` with exactly `k` members, as index lists.
    fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
        (0u32..(1 << n))
            .filter(|mask| mask.count_ones() as usize == k)
            .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
            .collect()
    }

    fn pick(shares: &[Share], indices: &[usize]) -> Vec<Share> {
        indices.iter().map(|i| shares[*i].clone()).collect()
    }

    #[test]
    fn field_multiplication_matches_known_products() {
        // Products from the AES specification (FIPS-197, section 4.2).
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        assert_eq!(mul(0x01, 0xab), 0xab);
        assert_eq!(mul(0x00, 0xab), 0x00);
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "inverse of {a}");
        }
        assert_eq!(inverse(0), 0);
    }

    #[test]
    fn every_threshold_subset_rebuilds_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for n in 2..=6u8 {
            for t in 2..=n {
                let secret = secret(&mut rng);
                let shares = split(&secret, n, t, &mut rng).unwrap();
                for k in usize::from(t)..=usize::from(n) {
                    for subset in subsets(usize::from(n), k) {
                        let combined = combine(&pick(&shares, &subset)).unwrap();
                        assert_eq!(*combined, secret, "n {n}, t {t}, subset {subset:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn fewer_than_threshold_shares_give_another_value() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for n in 2..=6u8 {
            for t in 2..=n {
                let secret = secret(&mut rng);
                let shares = split(&secret, n, t, &mut rng).unwrap();
                for subset in subsets(usize::from(n), usize::from(t) - 1) {
                    let combined = combine(&pick(&shares, &subset)).unwrap();
                    assert_ne!(*combined, secret, "n {n}, t {t}, subset {subset:?}");
                }
            }
        }
    }

    #[test]
    fn large_share_counts_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for (n, t) in [(255u8, 255u8), (255, 2), (100, 37), (20, 10)] {
            let secret = secret(&mut rng);
            let shares = split(&secret, n, t, &mut rng).unwrap();
            assert_eq!(shares.len(), usize::from(n));
            let last = &shares[shares.len() - usize::from(t)..];
            assert_eq!(*combine(last).unwrap(), secret, "n {n}, t {t}");
        }
    }

    #[test]
    fn single_share_holds_secret() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let secret = secret(&mut rng);
        let shares = split(&secret, 1, 1, &mut rng).unwrap();
        assert_eq!(shares.len(), 1);
        assert_eq!(*combine(&shares).unwrap(), secret);
    }

    #[test]
    fn shares_have_distinct_nonzero_coordinates() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let shares = split(&secret(&mut rng), 255, 3, &mut rng).unwrap();
        let mut xs: Vec<u8> = shares.iter().map(Share::x).collect();
        xs.sort_unstable();
        xs.dedup();
        assert_eq!(xs.len(), 255);
        assert!(!xs.contains(&0));
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let secret = secret(&mut rng);
        for (n, t) in [(0u8, 0u8), (3, 0), (3, 1), (3, 4), (1, 2), (0, 1)] {
            assert_eq!(
                split(&secret, n, t, &mut rng).unwrap_err(),
                ShamirError::InvalidSettings {
                    shares: n,
                    threshold: t
                },
            );
        }
    }

    #[test]
    fn duplicate_shares_are_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let shares = split(&secret(&mut rng), 3, 2, &mut rng).unwrap();
        let twice = vec![shares[0].clone(), shares[0].clone()];
        assert_eq!(
            combine(&twice).unwrap_err(),
            ShamirError::DuplicateCoordinate(shares[0].x())
        );
        assert_eq!(combine(&[]).unwrap_err(), ShamirError::Empty);
    }

    #[test]
    fn share_decodes_from_hex_and_base64() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let shares = split(&secret(&mut rng), 3, 2, &mut rng).unwrap();
        let share = &shares[0];
        let padded = share.to_base64();
        let unpadded = padded.trim_end_matches('=').to_owned();
        let upper_hex = share.to_hex().to_uppercase();
        for text in [share.to_hex().as_str(), &upper_hex, &padded, &unpadded] {
            assert_eq!(&decode_share(text).unwrap(), share, "text {text}");
        }
        let spaced = format!(" {} \n", share.to_hex().as_str());
        assert_eq!(&decode_share(&spaced).unwrap(), share);
    }

    #[test]
    fn malformed_share_text_is_rejected() {
        assert_eq!(decode_share("").unwrap_err(), ShamirError::Length(0));
        assert_eq!(
            decode_share("not a key!").unwrap_err(),
            ShamirError::Encoding
        );
        assert_eq!(decode_share("abcd").unwrap_err(), ShamirError::Length(2));
        let long = hex::encode([7u8; SHARE_LEN + 1]);
        assert_eq!(
            decode_share(&long).unwrap_err(),
            ShamirError::Length(SHARE_LEN + 1)
        );
        let zero_x = hex::encode([7u8; ROOT_KEY_LEN]) + "00";
        assert_eq!(
            decode_share(&zero_x).unwrap_err(),
            ShamirError::ZeroCoordinate
        );
    }

    proptest::proptest! {
        #[test]
        fn random_subsets_rebuild_secret(
            secret in proptest::array::uniform32(proptest::num::u8::ANY),
            shares in 2u8..=24,
            threshold_seed in proptest::num::u8::ANY,
            seed in proptest::num::u64::ANY,
        ) {
            let threshold = 2 + threshold_seed % (shares - 1);
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut all = split(&secret, shares, threshold, &mut rng).unwrap();
            // Rotating by a seed-dependent amount takes a different subset each case.
            let rotation = usize::try_from(seed % u64::from(shares)).unwrap();
            all.rotate_left(rotation);
            let combined = combine(&all[..usize::from(threshold)]).unwrap();
            proptest::prop_assert_eq!(*combined, secret);
        }

        #[test]
        fn decode_share_never_panics(text in ".{0,80}") {
            let _ = decode_share(&text);
        }
    }

    #[test]
    fn debug_hides_share_bytes() {
        let share = decode_share(&(hex::encode([0xab; ROOT_KEY_LEN]) + "05")).unwrap();
        let text = format!("{share:?}");
        assert_eq!(text, "Share(x = 5, ..)");
    }
}
