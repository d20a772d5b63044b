//! The bodies of Coffer's fuzz targets: one function per target, taking the raw fuzz input.
//!
//! The cargo-fuzz crate in `fuzz/` calls each function from a one-line `fuzz_target!`, and the
//! replay test of this crate runs every committed corpus and regression file through the same
//! functions, so a corpus case that once crashed keeps being checked by `cargo test`.
//!
//! A function returns normally for any input the code under test rejects with an error. It
//! panics only when the code under test panics or when an invariant check fails.

#![deny(missing_docs)]

mod http_input;
mod secondary_steps;
mod token_steps;

use coffer_core::Timestamp;
use coffer_core::acl::parse_policy;
use coffer_core::barrier::decode_share;
use coffer_core::forwarding::{ForwardMessage, IndexKey, parse_index};
use coffer_core::replication::activation::keys::{PrivateKey, PublicKey};
use coffer_core::replication::activation::{ACTIVATION_TOKEN_TYPE, decode_bundle, token};
use coffer_core::replication::frame::{FrameDecoder, FrameLimits, decode_frame, decode_message};
use coffer_core::replication::wal::{Wal, entry_key};
use coffer_core::storage::{MemStorage, Partition, Storage};
use coffer_io::server::{map_request, parse_config};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

pub use secondary_steps::secondary_state_machine;
pub use token_steps::barrier_tokens;

/// The body of a fuzz target.
pub type Body = fn(&[u8]);

/// Every target: its name, which is also its corpus directory, and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("frame_decoder", frame_decoder),
    ("replication_message", replication_message),
    ("wal_entry", wal_entry),
    ("policy_parser", policy_parser),
    ("server_config", server_config),
    ("http_request", http_request),
    ("shamir_share", shamir_share),
    ("secondary_state_machine", secondary_state_machine),
    ("barrier_tokens", barrier_tokens),
    ("activation_token", activation_token),
    ("bootstrap_bundle", bootstrap_bundle),
    ("vault_index", vault_index),
    ("forward_message", forward_message),
];

/// The time at which `activation_token` verifies tokens.
pub const ACTIVATION_NOW: Timestamp = Timestamp::from_secs(1_750_000_000);

/// Small limits, so that inputs of a few kilobytes reach the size checks.
pub const FUZZ_LIMITS: FrameLimits = FrameLimits {
    max_frame_payload: 64,
    max_message_size: 4096,
};

/// Feeds the input to a [`FrameDecoder`] in chunks whose sizes the first byte picks, polling
/// after every push as the contract asks; also decodes the first frame on its own.
pub fn frame_decoder(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let _ = decode_frame(stream, FUZZ_LIMITS.max_frame_payload);
    let mut decoder = FrameDecoder::new(FUZZ_LIMITS);
    for piece in stream.chunks(usize::from(chunk).max(1)) {
        decoder.push(piece);
        loop {
            match decoder.poll_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// Decodes the input as one replication message.
pub fn replication_message(data: &[u8]) {
    let _ = decode_message(data);
}

/// Stores the input as WAL entry 1 and reads it back through [`Wal::entry`].
pub fn wal_entry(data: &[u8]) {
    let storage = MemStorage::new();
    storage
        .write(|txn| txn.put(Partition::Wal, &entry_key(1), data))
        .expect("MemStorage accepts every write");
    let read = storage
        .read(|txn| Wal::entry(txn, 1))
        .expect("MemStorage opens a read transaction");
    if let Ok(Some(entry)) = read {
        let _ = entry.hash_is_valid();
    }
}

/// Parses the input as an ACL policy, in HCL or JSON by its first character.
pub fn policy_parser(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_policy("fuzz", text);
    }
}

/// Parses the input as a server configuration file.
pub fn server_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_config(text);
    }
}

/// Maps the request the input describes (see [`http_input`]) to a logical request.
pub fn http_request(data: &[u8]) {
    let input = http_input::HttpInput::parse(data);
    let _ = map_request(
        &input.method,
        &input.path_and_query,
        &input.headers,
        &input.body,
        input.remote_addr,
    );
}

/// Decodes the input as an unseal key share, in hex or base64.
pub fn shamir_share(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_share(text);
    }
}

/// Returns the key whose public half `activation_token` verifies with. The seed generator signs
/// with it, so some seeds carry a valid signature.
pub fn activation_key() -> PrivateKey {
    PrivateKey::generate(&mut ChaCha20Rng::seed_from_u64(5))
}

/// Parses the input as an activation token without checking it, then verifies it with the
/// fixed key of [`activation_key`].
pub fn activation_token(data: &[u8]) {
    static PUBLIC_KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = token::parse_unverified(text);
    let public_key = PUBLIC_KEY.get_or_init(|| activation_key().public_key());
    let _ = token::verify(public_key, text, ACTIVATION_NOW, ACTIVATION_TOKEN_TYPE);
}

/// Decodes the input as a bootstrap bundle.
pub fn bootstrap_bundle(data: &[u8]) {
    let _ = decode_bundle(data);
}

/// The key `vault_index` verifies with; its seeds were signed with it.
pub const VAULT_INDEX_KEY: [u8; 32] = [7; 32];

/// The replication set id `vault_index` verifies against.
pub const VAULT_INDEX_SET: &str = "fuzz-set";

/// Parses the input as an `X-Vault-Index` header, then verifies it with a fixed key; a header
/// the key accepts must encode back to a header with the same state.
pub fn vault_index(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_index(text);
    let key = IndexKey::from_bytes(VAULT_INDEX_KEY, VAULT_INDEX_SET);
    if let Ok(state) = key.verify(text) {
        let again = key.encode(state.local_index, state.replicated_index);
        assert_eq!(
            key.verify(&again).ok(),
            Some(state),
            "an accepted index re-encodes"
        );
    }
}

/// Feeds the input to a [`FrameDecoder`] as one stream of forwarding messages.
pub fn forward_message(data: &[u8]) {
    let mut decoder = FrameDecoder::new(FUZZ_LIMITS);
    decoder.push(data);
    while let Ok(Some(_)) = decoder.poll_payload::<ForwardMessage>() {}
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::TARGETS;

    fn files_of(directory: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(directory) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|entry| entry.expect("a corpus directory lists").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn committed_corpora_and_regressions_run_clean() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (name, body) in TARGETS {
            let seeds = files_of(&root.join("corpus").join(name));
            assert!(!seeds.is_empty(), "fuzz/corpus/{name} holds no seed");
            let regressions = files_of(&root.join("regressions").join(name));
            for file in seeds.iter().chain(&regressions) {
                let data = std::fs::read(file).expect("a corpus file reads");
                let outcome = std::panic::catch_unwind(|| body(&data));
                assert!(outcome.is_ok(), "{name}: {} panics", file.display());
            }
        }
    }

    fn seeds_of(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../corpus")
            .join(target);
        files_of(&directory)
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("seed-"))
            })
            .map(|path| {
                let data = std::fs::read(&path).expect("a seed file reads");
                (path, data)
            })
            .collect()
    }

    fn text(data: &[u8]) -> &str {
        std::str::from_utf8(data).expect("text seeds are UTF-8")
    }

    #[test]
    fn decoder_seeds_are_valid_inputs() {
        use coffer_core::replication::frame::decode_message;
        for (path, data) in seeds_of("replication_message") {
            assert!(decode_message(&data).is_ok(), "{}", path.display());
        }
        for (path, data) in seeds_of("policy_parser") {
            let parsed = coffer_core::acl::parse_policy("seed", text(&data));
            assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
        }
        for (path, data) in seeds_of("server_config") {
            let parsed = coffer_io::server::parse_config(text(&data));
            assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
        }
        for (path, data) in seeds_of("shamir_share") {
            let share = coffer_core::barrier::decode_share(text(&data));
            assert!(share.is_ok(), "{}", path.display());
        }
        for (path, data) in seeds_of("bootstrap_bundle") {
            let bundle = super::decode_bundle(&data);
            assert!(bundle.is_ok(), "{}: {bundle:?}", path.display());
        }
        let public_key = super::activation_key().public_key();
        for (path, data) in seeds_of("activation_token") {
            let claims = super::token::parse_unverified(text(&data));
            assert!(claims.is_ok(), "{}: {claims:?}", path.display());
        }
        let valid = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/activation_token/seed-valid"),
        )
        .expect("the valid token seed reads");
        let verified = super::token::verify(
            &public_key,
            &valid,
            super::ACTIVATION_NOW,
            super::ACTIVATION_TOKEN_TYPE,
        );
        assert!(verified.is_ok(), "{verified:?}");
        let index_key = coffer_core::forwarding::IndexKey::from_bytes(
            super::VAULT_INDEX_KEY,
            super::VAULT_INDEX_SET,
        );
        for (path, data) in seeds_of("vault_index") {
            let state = index_key.verify(text(&data));
            assert!(state.is_ok(), "{}: {state:?}", path.display());
        }
    }

    #[test]
    fn every_target_has_a_cargo_fuzz_binary() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for (name, _) in TARGETS {
            let binary = root.join("fuzz_targets").join(format!("{name}.rs"));
            let source = std::fs::read_to_string(&binary)
                .unwrap_or_else(|_| panic!("{} is missing", binary.display()));
            assert!(
                source.contains(&format!("coffer_fuzz_targets::{name}(")),
                "{} does not call its body",
                binary.display()
            );
        }
    }
}
