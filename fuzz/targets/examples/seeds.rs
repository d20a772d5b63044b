//! Writes the seed files of every fuzz corpus: `cargo run -p coffer-fuzz-targets --example seeds`.
//!
//! Seeds are made with the product's own encoders (frames from `encode_message`, an entry as
//! `Wal::store` writes it, a share from `shamir::split`) or are real texts (policies, a server
//! configuration, HTTP requests). The stateful targets get fixed pseudo-random byte strings,
//! which their `Arbitrary` decoding turns into step sequences. Every seed file is named
//! `seed-*`, so files libFuzzer adds stay apart.

use std::path::{Path, PathBuf};

use std::time::Duration;

use coffer_core::barrier::shamir::split;
use coffer_core::replication::activation::keys::PrivateKey;
use coffer_core::replication::activation::{
    self, BootstrapBundle, Claims, ClaimsParams, ReplicationCa, token,
};
use coffer_core::replication::frame::{decode_frame, encode_message};
use coffer_core::replication::message::{BucketDelta, ErrorCode, Message};
use coffer_core::replication::wal::{Entry, Op, Wal};
use coffer_core::replication::{Epoch, Position};
use coffer_core::storage::{MemStorage, Partition, Storage};
use coffer_fuzz_targets::{ACTIVATION_NOW, FUZZ_LIMITS, activation_key};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let messages = messages();
    for (name, message) in &messages {
        let frames = encode_message(message, FUZZ_LIMITS).expect("seed messages fit the limits");
        let stream = frames.concat();
        let mut chunked = vec![7];
        chunked.extend_from_slice(&stream);
        write(&root, "frame_decoder", name, &chunked)?;
        write(&root, "replication_message", name, &payload_of(&stream))?;
    }
    for (name, entry) in entries() {
        write(&root, "wal_entry", name, &stored(&entry))?;
    }
    for (name, text) in POLICIES {
        write(&root, "policy_parser", name, text.as_bytes())?;
    }
    for (name, text) in CONFIGS {
        write(&root, "server_config", name, text.as_bytes())?;
    }
    for (name, text) in REQUESTS {
        write(&root, "http_request", name, text.as_bytes())?;
    }
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let shares = split(&[0x5a; 32], 3, 2, &mut rng).expect("3 shares of threshold 2 are valid");
    write(&root, "shamir_share", "hex", shares[0].to_hex().as_bytes())?;
    write(
        &root,
        "shamir_share",
        "base64",
        shares[1].to_base64().as_bytes(),
    )?;
    let unpadded = shares[2].to_base64().trim_end_matches('=').to_owned();
    write(
        &root,
        "shamir_share",
        "base64-unpadded",
        unpadded.as_bytes(),
    )?;
    activation_seeds(&root)?;
    for target in ["secondary_state_machine", "barrier_tokens"] {
        for (seed, length) in [(1, 64), (2, 256), (3, 1024)] {
            let mut bytes = vec![0; length];
            ChaCha20Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
            write(&root, target, &format!("random-{length}"), &bytes)?;
        }
    }
    Ok(())
}

fn activation_seeds(root: &Path) -> std::io::Result<()> {
    let cluster = "cluster-a";
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let ca = ReplicationCa::generate(&mut rng, ACTIVATION_NOW, cluster).expect("the CA generates");
    let primary = ca
        .issue_primary_cert(&mut rng, ACTIVATION_NOW, &["127.0.0.1:8201"])
        .expect("the primary certificate issues");
    let secondary = ca
        .issue_secondary_cert(&mut rng, ACTIVATION_NOW, "east")
        .expect("the secondary certificate issues");
    let mut bundle = BootstrapBundle {
        cluster_id: cluster.to_owned(),
        secondary_id: "east".to_owned(),
        primary_cluster_addrs: vec!["127.0.0.1:8201".to_owned(), "10.0.0.5:8201".to_owned()],
        primary_api_addr: "https://127.0.0.1:8200".to_owned(),
        ca_cert_der: ca.cert_der().to_vec(),
        primary_cert_der: primary.cert_der,
        secondary_cert_der: secondary.cert_der,
        secondary_key: secondary.key,
        epoch: activation::Epoch {
            number: 1,
            cluster_id: cluster.to_owned(),
        },
        epoch_start: None,
    };
    write(root, "bootstrap_bundle", "with-key", &bundle.encode())?;
    bundle.secondary_key = None;
    write(root, "bootstrap_bundle", "without-key", &bundle.encode())?;

    let params = ClaimsParams {
        jti: "wrapping-token-id".to_owned(),
        addr: Some("https://127.0.0.1:8200".to_owned()),
        id: "east".to_owned(),
        cluster_id: cluster.to_owned(),
        ca_sha256: ca.ca_sha256(),
    };
    let claims = Claims::new(params, ACTIVATION_NOW, Duration::from_secs(1800));
    let valid = token::issue(&activation_key(), &claims);
    write(root, "activation_token", "valid", valid.as_bytes())?;
    let other_key = PrivateKey::generate(&mut rng);
    let foreign = token::issue(&other_key, &claims);
    write(root, "activation_token", "other-key", foreign.as_bytes())?;
    let mut old = claims.clone();
    old.exp = old.iat;
    let expired = token::issue(&activation_key(), &old);
    write(root, "activation_token", "expired", expired.as_bytes())
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let directory: PathBuf = root.join(target);
    std::fs::create_dir_all(&directory)?;
    std::fs::write(directory.join(format!("seed-{name}")), bytes)
}

/// The message bytes the frames of `stream` carry.
fn payload_of(stream: &[u8]) -> Vec<u8> {
    let mut rest = stream;
    let mut payload = Vec::new();
    while let Ok(Some((frame, used))) = decode_frame(rest, FUZZ_LIMITS.max_frame_payload) {
        payload.extend_from_slice(frame.payload);
        rest = &rest[used..];
    }
    payload
}

fn epoch() -> Epoch {
    Epoch::new(1, "cluster-a")
}

fn entries() -> Vec<(&'static str, Entry)> {
    let first = Entry::next(
        &Position::default(),
        epoch(),
        vec![Op::Put {
            key: "logical/kv/app".into(),
            value: vec![0xc1; 40],
        }],
    );
    let second = Entry::next(
        &first.position(),
        epoch(),
        vec![
            Op::Delete {
                key: "logical/kv/old".into(),
            },
            Op::Put {
                key: "sys/policy/web".into(),
                value: vec![0xc2; 24],
            },
        ],
    );
    vec![("first", first), ("second", second)]
}

fn stored(entry: &Entry) -> Vec<u8> {
    let storage = MemStorage::new();
    storage
        .write(|txn| Wal::new(16).store(txn, entry))
        .expect("MemStorage accepts every write");
    let mut rows = storage.dump(Partition::Wal);
    rows.pop().expect("the entry was stored").1
}

fn messages() -> Vec<(&'static str, Message)> {
    let mut entries = entries().into_iter().map(|(_, entry)| entry);
    let first = entries.next().expect("entries() makes two entries");
    let second = entries.next().expect("entries() makes two entries");
    let head = second.position();
    vec![
        (
            "hello",
            Message::Hello {
                cluster_id: "cluster-a".into(),
                secondary_id: "s0".into(),
                position: first.position(),
                root: [3; 32],
            },
        ),
        (
            "stream-start",
            Message::StreamStart {
                from: 2,
                head: head.clone(),
                root: [4; 32],
            },
        ),
        (
            "wal-batch",
            Message::WalBatch {
                entries: vec![first, second],
            },
        ),
        (
            "heartbeat",
            Message::Heartbeat {
                head: head.clone(),
                root: [4; 32],
            },
        ),
        ("ack", Message::Ack { applied: 2 }),
        (
            "sync-start",
            Message::SyncStart {
                sync: 9,
                position: head.clone(),
                root: [4; 32],
                pages: vec![[5; 32], [6; 32]],
            },
        ),
        (
            "bucket-response",
            Message::BucketResponse {
                sync: 9,
                buckets: vec![(
                    17,
                    BucketDelta {
                        missing: vec![("logical/kv/app".into(), [7; 32])],
                        unmatched: vec![0],
                    },
                )],
            },
        ),
        (
            "bucket-request",
            Message::BucketRequest {
                sync: 9,
                buckets: vec![(17, vec![[3; 8], [4; 8]])],
            },
        ),
        (
            "key-values",
            Message::KeyValues {
                sync: 9,
                values: vec![
                    ("logical/kv/app".into(), Some(vec![0xc1; 40])),
                    ("logical/kv/old".into(), None),
                ],
            },
        ),
        (
            "error",
            Message::Error {
                code: ErrorCode::Protocol,
                message: "unexpected message".into(),
            },
        ),
        (
            "goodbye",
            Message::Goodbye {
                reason: "shutting down".into(),
            },
        ),
    ]
}

const POLICIES: &[(&str, &str)] = &[
    (
        "default.hcl",
        include_str!("../../../core/src/acl/default_policy.hcl"),
    ),
    (
        "kv.hcl",
        r#"
# Applications read their own secrets.
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}

path "secret/+/team/+" {
  capabilities = ["create", "update", "patch"]
}

path "sys/policies/acl/*" {
  capabilities = ["sudo", "read"]
}

path "secret/data/app/admin" {
  capabilities = ["deny"]
}
"#,
    ),
    (
        "kv.json",
        r#"{"path": {"secret/data/app/*": {"capabilities": ["read", "list"]},
  "auth/token/create": {"capabilities": ["update"]},
  "sys/mounts": {"policy": "read"}}}"#,
    ),
];

const CONFIGS: &[(&str, &str)] = &[
    (
        "vault.hcl",
        r#"
ui = true
api_addr = "https://10.0.0.5:8200"
cluster_addr = "https://10.0.0.5:8201"
disable_mlock = true
log_level = "debug"
default_lease_ttl = "1h"
max_lease_ttl = "720h"

storage "lmdb" {
  path = "/srv/coffer/data"
  map_size = 4294967296
}

listener "tcp" {
  address = "0.0.0.0:8200"
  tls_cert_file = "/srv/coffer/tls/cert.pem"
  tls_key_file = "/srv/coffer/tls/key.pem"
  tls_min_version = "tls13"
}

listener "tcp" {
  address = "127.0.0.1:8210"
  tls_disable = 1
}

replication {
  logshipper_buffer_length = 2000
  logshipper_buffer_size = "16777216"
}
"#,
    ),
    (
        "vault.json",
        r#"{"storage": {"lmdb": {"path": "/srv/coffer/data"}},
  "listener": {"tcp": {"address": "127.0.0.1:8200", "tls_disable": "true"}},
  "api_addr": "http://127.0.0.1:8200", "log_format": "json"}"#,
    ),
];

const REQUESTS: &[(&str, &str)] = &[
    (
        "init",
        "PUT /v1/sys/init HTTP/1.1\r\nHost: 127.0.0.1:8200\r\nContent-Type: application/json\r\n\r\n{\"secret_shares\":5,\"secret_threshold\":3}",
    ),
    (
        "kv-read",
        "GET /v1/secret/data/app/config?version=2 HTTP/1.1\r\nX-Vault-Token: hvs.CAESIFakeToken\r\n\r\n",
    ),
    (
        "kv-list",
        "LIST /v1/secret/metadata/app/ HTTP/1.1\r\nAuthorization: Bearer hvs.CAESIFakeToken\r\n\r\n",
    ),
    (
        "list-query",
        "GET /v1/secret/metadata/app?list=true HTTP/1.1\r\nX-Vault-Token: root\r\n\r\n",
    ),
    (
        "token-create-wrapped",
        "POST /v1/auth/token/create HTTP/1.1\r\nX-Vault-Token: root\r\nX-Vault-Wrap-TTL: 5m\r\nX-Vault-Request: true\r\n\r\n{\"policies\":[\"web\"],\"ttl\":\"1h\",\"num_uses\":3}",
    ),
    (
        "kv-patch",
        "PATCH /v1/secret/data/app/config HTTP/1.1\r\nX-Vault-Token: root\r\nContent-Type: application/merge-patch+json\r\n\r\n{\"data\":{\"password\":null,\"user\":\"app\"}}",
    ),
    (
        "kv-delete",
        "DELETE /v1/secret/data/app/config HTTP/1.1\r\nX-Vault-Token: root\r\n\r\n",
    ),
    (
        "form-body",
        "POST /v1/sys/unseal HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nkey=abcd&reset=false",
    ),
];
