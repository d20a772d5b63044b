//! Password hashing for userpass: Argon2id, stored as a PHC string
//! (`$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>`) that carries its own cost parameters.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::request::Secret;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HashCost {
    /// Memory in KiB.
    pub(crate) memory_kib: u32,
    /// Passes over the memory.
    pub(crate) iterations: u32,
    /// Degree of parallelism.
    pub(crate) lanes: u32,
}

/// The production cost: OWASP's first recommended Argon2id setting (19 MiB, 2 passes, one
/// lane).
const PRODUCTION_COST: HashCost = HashCost {
    memory_kib: 19 * 1024,
    iterations: 2,
    lanes: 1,
};

/// The cost in this crate's own tests, so that debug builds stay fast: 64 KiB and one pass.
/// Argon2 needs at least 8 KiB per lane.
const TEST_COST: HashCost = HashCost {
    memory_kib: 64,
    iterations: 1,
    lanes: 1,
};

/// The cost of new hashes. Stored hashes carry their own cost, so changing it affects only
/// passwords set afterwards.
const COST: HashCost = if cfg!(test) {
    TEST_COST
} else {
    PRODUCTION_COST
};

/// The salt of the hash computed for an unknown user. It only makes that login take as long as
/// a real one, so it need not be secret.
const DUMMY_SALT: &[u8; 16] = b"coffer-no-user!!";

/// Hashes `password` with a 16-byte salt drawn from `rng`.
pub(crate) fn hash(password: &Secret, rng: &mut dyn CryptoRngCore) -> Result<String, Error> {
    let salt_bytes = crate::ids::bytes::<16>(rng);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(hash_failed)?;
    let hashed = hasher(COST)?
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(hash_failed)?;
    Ok(hashed.to_string())
}

/// Checks `password` against a stored PHC hash in constant time. `None` stands for a user that
/// does not exist: the password is then hashed at the current cost anyway and the result is
/// `false`, so a wrong user name takes as long as a wrong password.
pub(crate) fn verify(password: &Secret, stored: Option<&str>) -> Result<bool, Error> {
    let Some(stored) = stored else {
        let mut output = Zeroizing::new([0u8; 32]);
        hasher(COST)?
            .hash_password_into(password.expose().as_bytes(), DUMMY_SALT, &mut *output)
            .map_err(hash_failed)?;
        std::hint::black_box(&output);
        return Ok(false);
    };
    let parsed = PasswordHash::new(stored)
        .map_err(|_| Error::internal("the stored password hash of this user is malformed"))?;
    // The verifier takes the cost from the stored hash and compares the outputs in constant
    // time.
    match Argon2::default().verify_password(password.expose().as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(error) => Err(hash_failed(error)),
    }
}

fn hasher(cost: HashCost) -> Result<Argon2<'static>, Error> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
        .map_err(|error| Error::internal(format!("invalid Argon2 parameters: {error}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_failed(error: impl std::fmt::Display) -> Error {
    Error::internal(format!("failed to hash the password: {error}"))
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn hash_verifies_only_its_password() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let stored = hash(&Secret::new("hunter2"), &mut rng).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{stored}"
        );
        assert_eq!(verify(&Secret::new("hunter2"), Some(&stored)), Ok(true));
        assert_eq!(verify(&Secret::new("hunter3"), Some(&stored)), Ok(false));
    }

    #[test]
    fn unknown_user_never_verifies() {
        assert_eq!(verify(&Secret::new("hunter2"), None), Ok(false));
        assert_eq!(verify(&Secret::new(""), None), Ok(false));
    }

    #[test]
    fn salts_differ_between_hashes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let first = hash(&Secret::new("same"), &mut rng).unwrap();
        let second = hash(&Secret::new("same"), &mut rng).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn production_cost_is_valid() {
        assert!(hasher(PRODUCTION_COST).is_ok());
    }
}
