use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Map, Value, json};

use crate::engines::testing::Harness;
use crate::handler::Ctx;
use crate::request::Operation::{Delete, List, Read, Update};
use crate::request::{Request, Response};
use crate::storage::{Partition, ReadOnly, Storage};

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn with_transit() -> Harness {
    let mut harness = Harness::new();
    harness.ok(Update, "sys/mounts/transit", json!({"type": "transit"}));
    harness
}

fn create_key(harness: &mut Harness, name: &str, body: Value) -> Map<String, Value> {
    harness.data(Update, &format!("transit/keys/{name}"), body)
}

fn encrypt(harness: &mut Harness, name: &str, plaintext: &[u8]) -> String {
    let data = harness.data(
        Update,
        &format!("transit/encrypt/{name}"),
        json!({"plaintext": b64(plaintext)}),
    );
    data["ciphertext"].as_str().unwrap().to_owned()
}

fn decrypt(harness: &mut Harness, name: &str, ciphertext: &str) -> Vec<u8> {
    let data = harness.data(
        Update,
        &format!("transit/decrypt/{name}"),
        json!({"ciphertext": ciphertext}),
    );
    STANDARD
        .decode(data["plaintext"].as_str().unwrap())
        .unwrap()
}

/// Runs a request on a read-only snapshot only, as a secondary or the first attempt would.
fn run_read_only(harness: &mut Harness, path: &str, body: Value) -> Response {
    let request = Request::new(Update, path).with_data(body);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let core = &harness.core;
    let now = harness.now;
    harness
        .storage
        .read(|txn| {
            let mut read_only = ReadOnly(txn);
            let mut ctx = Ctx::new(now, &mut rng);
            crate::engines::handle(core, &mut ctx, &request, None, &mut read_only)
        })
        .unwrap()
        .unwrap_or_else(|error| panic!("{path} failed on the read-only snapshot: {error:?}"))
}

fn message(harness: &mut Harness, path: &str, body: Value) -> String {
    let (status, messages) = harness.fail(Update, path, body);
    assert_eq!(status, 400, "{path}: {messages:?}");
    messages.join("; ")
}

#[test]
fn symmetric_types_round_trip() {
    let mut harness = with_transit();
    let kinds = [
        "aes128-gcm96",
        "aes256-gcm96",
        "chacha20-poly1305",
        "xchacha20-poly1305",
    ];
    for kind in kinds {
        create_key(&mut harness, kind, json!({"type": kind}));
        let ciphertext = encrypt(&mut harness, kind, b"attack at dawn");
        assert!(ciphertext.starts_with("vault:v1:"), "{kind}: {ciphertext}");
        assert_eq!(decrypt(&mut harness, kind, &ciphertext), b"attack at dawn");
    }
}

#[test]
fn xchacha_ciphertext_has_long_nonce() {
    let mut harness = with_transit();
    create_key(&mut harness, "x", json!({"type": "xchacha20-poly1305"}));
    let ciphertext = encrypt(&mut harness, "x", b"12345");
    let raw = STANDARD
        .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 24 + 5 + 16);
}

#[test]
fn ciphertext_is_nonce_ciphertext_and_tag() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let ciphertext = encrypt(&mut harness, "k", b"12345");
    let raw = STANDARD
        .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 12 + 5 + 16);
}

#[test]
fn key_read_has_vault_shape() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let data = harness.data(Read, "transit/keys/k", json!({}));
    assert_eq!(data["type"], json!("aes256-gcm96"));
    assert_eq!(data["name"], json!("k"));
    assert_eq!(data["keys"], json!({"1": 1_700_000_000}));
    assert_eq!(data["latest_version"], json!(1));
    assert_eq!(data["min_decryption_version"], json!(1));
    assert_eq!(data["min_encryption_version"], json!(0));
    assert_eq!(data["deletion_allowed"], json!(false));
    assert_eq!(data["exportable"], json!(false));
    assert_eq!(data["allow_plaintext_backup"], json!(false));
    assert_eq!(data["derived"], json!(false));
    assert_eq!(data["supports_encryption"], json!(true));
    assert_eq!(data["supports_decryption"], json!(true));
    assert_eq!(data["supports_derivation"], json!(true));
    assert_eq!(data["supports_signing"], json!(false));
}

#[test]
fn missing_key_reads_as_404() {
    let mut harness = with_transit();
    assert_eq!(harness.fail(Read, "transit/keys/none", json!({})).0, 404);
}

#[test]
fn creating_existing_key_changes_nothing() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let ciphertext = encrypt(&mut harness, "k", b"x");
    let logical = harness.logical(
        Update,
        "transit/keys/k",
        json!({"type": "chacha20-poly1305"}),
    );
    assert_eq!(logical.data.unwrap()["type"], json!("aes256-gcm96"));
    assert_eq!(logical.warnings, vec!["key k already existed".to_string()]);
    assert_eq!(decrypt(&mut harness, "k", &ciphertext), b"x");
}

#[test]
fn unknown_key_type_is_rejected() {
    let mut harness = with_transit();
    let text = message(&mut harness, "transit/keys/k", json!({"type": "des"}));
    assert!(text.contains("unknown key type \"des\""), "{text}");
}

#[test]
fn list_shows_key_names() {
    let mut harness = with_transit();
    assert_eq!(harness.fail(List, "transit/keys/", json!({})).0, 404);
    create_key(&mut harness, "b", json!({}));
    create_key(&mut harness, "a", json!({}));
    let data = harness.data(List, "transit/keys/", json!({}));
    assert_eq!(data["keys"], json!(["a", "b"]));
}

#[test]
fn delete_needs_deletion_allowed() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let (status, messages) = harness.fail(Delete, "transit/keys/k", json!({}));
    assert_eq!(status, 400);
    assert!(messages[0].starts_with("deletion is not allowed for this key"));
    harness.data(
        Update,
        "transit/keys/k/config",
        json!({"deletion_allowed": true}),
    );
    harness.ok(Delete, "transit/keys/k", json!({}));
    assert_eq!(harness.fail(Read, "transit/keys/k", json!({})).0, 404);
}

#[test]
fn rotation_keeps_old_ciphertext_readable() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let old = encrypt(&mut harness, "k", b"old secret");
    let data = harness.data(Update, "transit/keys/k/rotate", json!({}));
    assert_eq!(data["latest_version"], json!(2));
    let new = encrypt(&mut harness, "k", b"new secret");
    assert!(new.starts_with("vault:v2:"), "{new}");
    assert_eq!(decrypt(&mut harness, "k", &old), b"old secret");
    assert_eq!(decrypt(&mut harness, "k", &new), b"new secret");
}

#[test]
fn min_decryption_version_rejects_old_ciphertext() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let old = encrypt(&mut harness, "k", b"old");
    harness.data(Update, "transit/keys/k/rotate", json!({}));
    harness.data(
        Update,
        "transit/keys/k/config",
        json!({"min_decryption_version": 2}),
    );
    let text = message(
        &mut harness,
        "transit/decrypt/k",
        json!({"ciphertext": old}),
    );
    assert!(
        text.starts_with("ciphertext or signature version is disallowed by policy (too old)"),
        "{text}"
    );
}

#[test]
fn min_decryption_version_above_latest_is_rejected() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let text = message(
        &mut harness,
        "transit/keys/k/config",
        json!({"min_decryption_version": 5}),
    );
    assert_eq!(
        text,
        "cannot set min decryption version of 5, latest key version is 1"
    );
}

#[test]
fn key_version_selects_encryption_version() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    harness.data(Update, "transit/keys/k/rotate", json!({}));
    let data = harness.data(
        Update,
        "transit/encrypt/k",
        json!({"plaintext": b64(b"x"), "key_version": 1}),
    );
    assert_eq!(data["key_version"], json!(1));
    assert!(
        data["ciphertext"]
            .as_str()
            .unwrap()
            .starts_with("vault:v1:")
    );
    let text = message(
        &mut harness,
        "transit/encrypt/k",
        json!({"plaintext": b64(b"x"), "key_version": 3}),
    );
    assert!(
        text.contains("higher than the latest key version"),
        "{text}"
    );
}

#[test]
fn derived_key_needs_context() {
    let mut harness = with_transit();
    create_key(&mut harness, "d", json!({"derived": true}));
    let text = message(
        &mut harness,
        "transit/encrypt/d",
        json!({"plaintext": b64(b"x")}),
    );
    assert!(
        text.starts_with("missing 'context' for key derivation"),
        "{text}"
    );

    let context = b64(b"user-1");
    let data = harness.data(
        Update,
        "transit/encrypt/d",
        json!({"plaintext": b64(b"x"), "context": context}),
    );
    let ciphertext = data["ciphertext"].as_str().unwrap().to_owned();
    let data = harness.data(
        Update,
        "transit/decrypt/d",
        json!({"ciphertext": ciphertext, "context": context}),
    );
    assert_eq!(data["plaintext"], json!(b64(b"x")));
    let text = message(
        &mut harness,
        "transit/decrypt/d",
        json!({"ciphertext": ciphertext, "context": b64(b"user-2")}),
    );
    assert!(
        text.starts_with("invalid ciphertext: unable to decrypt"),
        "{text}"
    );
}

#[test]
fn derived_key_read_reports_kdf() {
    let mut harness = with_transit();
    let data = create_key(&mut harness, "d", json!({"derived": true}));
    assert_eq!(data["derived"], json!(true));
    assert_eq!(data["kdf"], json!("hkdf_sha256"));
    assert_eq!(data["convergent_encryption"], json!(false));
}

#[test]
fn convergent_encryption_repeats_ciphertext() {
    let mut harness = with_transit();
    create_key(
        &mut harness,
        "c",
        json!({"derived": true, "convergent_encryption": true}),
    );
    let body = json!({"plaintext": b64(b"same"), "context": b64(b"ctx")});
    let first = harness.data(Update, "transit/encrypt/c", body.clone());
    let second = harness.data(Update, "transit/encrypt/c", body);
    assert_eq!(first["ciphertext"], second["ciphertext"]);
    let other = harness.data(
        Update,
        "transit/encrypt/c",
        json!({"plaintext": b64(b"different"), "context": b64(b"ctx")}),
    );
    assert_ne!(first["ciphertext"], other["ciphertext"]);
}

#[test]
fn convergent_encryption_requires_derived() {
    let mut harness = with_transit();
    let text = message(
        &mut harness,
        "transit/keys/c",
        json!({"convergent_encryption": true}),
    );
    assert!(
        text.starts_with("convergent encryption requires derivation"),
        "{text}"
    );
}

#[test]
fn random_nonces_make_distinct_ciphertexts() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let first = encrypt(&mut harness, "k", b"same");
    let second = encrypt(&mut harness, "k", b"same");
    assert_ne!(first, second);
}

#[test]
fn encrypt_creates_missing_key() {
    let mut harness = with_transit();
    let ciphertext = encrypt(&mut harness, "fresh", b"hello");
    let data = harness.data(Read, "transit/keys/fresh", json!({}));
    assert_eq!(data["type"], json!("aes256-gcm96"));
    assert_eq!(decrypt(&mut harness, "fresh", &ciphertext), b"hello");
}

#[test]
fn decrypt_with_unknown_key_is_400() {
    let mut harness = with_transit();
    let text = message(
        &mut harness,
        "transit/decrypt/nope",
        json!({"ciphertext": "vault:v1:AAAA"}),
    );
    assert!(text.starts_with("encryption key not found"), "{text}");
    assert!(text.contains("\"nope\""), "{text}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    create_key(&mut harness, "other", json!({}));
    let foreign = encrypt(&mut harness, "other", b"not yours");
    let cases = [
        (
            json!({"plaintext": "%%%"}),
            "encrypt",
            "failed to base64-decode plaintext",
        ),
        (json!({}), "encrypt", "missing plaintext to encrypt"),
        (
            json!({"ciphertext": "abc"}),
            "decrypt",
            "invalid ciphertext: no prefix",
        ),
        (
            json!({"ciphertext": "vault:v1"}),
            "decrypt",
            "invalid ciphertext: wrong number of fields",
        ),
        (
            json!({"ciphertext": "vault:vx:AAAA"}),
            "decrypt",
            "invalid ciphertext: version number could not be decoded",
        ),
        (
            json!({"ciphertext": "vault:v9:AAAA"}),
            "decrypt",
            "invalid ciphertext: version is too new",
        ),
        (
            json!({"ciphertext": "vault:v1:!!!"}),
            "decrypt",
            "invalid ciphertext: could not decode base64",
        ),
        (
            json!({"ciphertext": "vault:v1:AAAA"}),
            "decrypt",
            "invalid ciphertext: 3 bytes is shorter than the 28-byte minimum",
        ),
        (
            json!({"ciphertext": foreign}),
            "decrypt",
            "invalid ciphertext: unable to decrypt with version 1 of key \"k\"",
        ),
        (json!({}), "decrypt", "missing ciphertext to decrypt"),
    ];
    for (body, endpoint, expected) in cases {
        let text = message(&mut harness, &format!("transit/{endpoint}/k"), body.clone());
        assert!(text.starts_with(expected), "{body}: {text}");
    }
}

#[test]
fn errors_never_echo_plaintext() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({"derived": true}));
    let secret = b64(b"plaintext-marker-5531");
    let text = message(
        &mut harness,
        "transit/encrypt/k",
        json!({"plaintext": secret}),
    );
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains("plaintext-marker-5531"), "{text}");
}

#[test]
fn batch_reports_errors_per_item() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let logical = harness.logical(
        Update,
        "transit/encrypt/k",
        json!({"batch_input": [
            {"plaintext": b64(b"one"), "reference": "a"},
            {"plaintext": "not base64!"},
            {"plaintext": b64(b"three")},
        ]}),
    );
    assert_eq!(logical.status, 400);
    let results = logical.data.unwrap()["batch_results"].clone();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["reference"], json!("a"));
    assert_eq!(
        results[1]["error"],
        json!("failed to base64-decode plaintext")
    );
    assert!(results[1].get("ciphertext").is_none());

    let batch: Vec<Value> = [&results[0], &results[2]]
        .iter()
        .map(|result| json!({"ciphertext": result["ciphertext"]}))
        .chain([json!({"ciphertext": "vault:v1:AAAA"})])
        .collect();
    let logical = harness.logical(Update, "transit/decrypt/k", json!({"batch_input": batch}));
    let data = logical.data.unwrap();
    let results = data["batch_results"].as_array().unwrap();
    assert_eq!(results[0]["plaintext"], json!(b64(b"one")));
    assert_eq!(results[1]["plaintext"], json!(b64(b"three")));
    assert!(
        results[2]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid ciphertext")
    );
}

#[test]
fn batch_without_errors_is_200() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let data = harness.data(
        Update,
        "transit/encrypt/k",
        json!({"batch_input": [{"plaintext": b64(b"a")}, {"plaintext": b64(b"b")}]}),
    );
    let results = data["batch_results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["key_version"], json!(1));
}

#[test]
fn partial_failure_code_replaces_400() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let logical = harness.logical(
        Update,
        "transit/encrypt/k",
        json!({
            "partial_failure_response_code": 207,
            "batch_input": [{"plaintext": b64(b"a")}, {"plaintext": "?"}],
        }),
    );
    assert_eq!(logical.status, 207);
}

#[test]
fn rewrap_moves_ciphertext_to_latest_version() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let old = encrypt(&mut harness, "k", b"payload");
    harness.data(Update, "transit/keys/k/rotate", json!({}));
    let data = harness.data(Update, "transit/rewrap/k", json!({"ciphertext": old}));
    let rewrapped = data["ciphertext"].as_str().unwrap().to_owned();
    assert!(rewrapped.starts_with("vault:v2:"), "{rewrapped}");
    assert_eq!(data["key_version"], json!(2));
    assert_eq!(decrypt(&mut harness, "k", &rewrapped), b"payload");
}

#[test]
fn datakey_plaintext_decrypts_to_itself() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let data = harness.data(Update, "transit/datakey/plaintext/k", json!({"bits": 512}));
    let plaintext = STANDARD
        .decode(data["plaintext"].as_str().unwrap())
        .unwrap();
    assert_eq!(plaintext.len(), 64);
    let ciphertext = data["ciphertext"].as_str().unwrap().to_owned();
    assert_eq!(decrypt(&mut harness, "k", &ciphertext), plaintext);

    let wrapped = harness.data(Update, "transit/datakey/wrapped/k", json!({}));
    assert!(wrapped.get("plaintext").is_none());
    assert!(
        wrapped["ciphertext"]
            .as_str()
            .unwrap()
            .starts_with("vault:v1:")
    );
    let text = message(
        &mut harness,
        "transit/datakey/plaintext/k",
        json!({"bits": 100}),
    );
    assert!(text.starts_with("invalid bits 100"), "{text}");
}

#[test]
fn hmac_is_versioned_and_verifies() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let input = b64(b"message");
    let data = harness.data(Update, "transit/hmac/k", json!({"input": input}));
    let tag = data["hmac"].as_str().unwrap().to_owned();
    assert!(tag.starts_with("vault:v1:"), "{tag}");
    let raw = STANDARD
        .decode(tag.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    assert_eq!(raw.len(), 32);

    let valid = harness.data(
        Update,
        "transit/verify/k",
        json!({"input": input, "hmac": tag}),
    );
    assert_eq!(valid["valid"], json!(true));
    let changed = harness.data(
        Update,
        "transit/verify/k",
        json!({"input": b64(b"massage"), "hmac": tag}),
    );
    assert_eq!(changed["valid"], json!(false));

    let long = harness.data(Update, "transit/hmac/k/sha2-512", json!({"input": input}));
    let raw = STANDARD
        .decode(
            long["hmac"]
                .as_str()
                .unwrap()
                .strip_prefix("vault:v1:")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(raw.len(), 64);
}

#[test]
fn hmac_key_type_computes_hmac() {
    let mut harness = with_transit();
    let data = create_key(&mut harness, "h", json!({"type": "hmac", "key_size": 64}));
    assert_eq!(data["supports_encryption"], json!(false));
    assert_eq!(data["key_size"], json!(64));
    let result = harness.data(Update, "transit/hmac/h", json!({"input": b64(b"m")}));
    assert!(result["hmac"].as_str().unwrap().starts_with("vault:v1:"));
    let text = message(
        &mut harness,
        "transit/encrypt/h",
        json!({"plaintext": b64(b"m")}),
    );
    assert!(text.contains("does not support encryption"), "{text}");
}

#[test]
fn hash_matches_known_digests() {
    let mut harness = with_transit();
    let data = harness.data(Update, "transit/hash", json!({"input": b64(b"abc")}));
    assert_eq!(
        data["sum"],
        json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    let data = harness.data(
        Update,
        "transit/hash/sha3-256",
        json!({"input": b64(b"abc"), "format": "base64"}),
    );
    let sum = STANDARD.decode(data["sum"].as_str().unwrap()).unwrap();
    assert_eq!(
        hex::encode(sum),
        "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
    );
    let text = message(
        &mut harness,
        "transit/hash/md5",
        json!({"input": b64(b"abc")}),
    );
    assert!(text.starts_with("unsupported algorithm \"md5\""), "{text}");
}

#[test]
fn random_returns_requested_length() {
    let mut harness = with_transit();
    let data = harness.data(Update, "transit/random", json!({}));
    let bytes = STANDARD
        .decode(data["random_bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 32);
    let data = harness.data(Update, "transit/random/16", json!({"format": "hex"}));
    assert_eq!(data["random_bytes"].as_str().unwrap().len(), 32);
    let data = harness.data(Update, "transit/random/platform/8", json!({}));
    let bytes = STANDARD
        .decode(data["random_bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes.len(), 8);
    let text = message(&mut harness, "transit/random", json!({"bytes": 0}));
    assert!(text.starts_with("invalid bytes 0"), "{text}");
}

fn sign(harness: &mut Harness, name: &str, input: &[u8], options: Value) -> String {
    let mut body = options;
    body["input"] = json!(b64(input));
    let data = harness.data(Update, &format!("transit/sign/{name}"), body);
    data["signature"].as_str().unwrap().to_owned()
}

fn verify(
    harness: &mut Harness,
    name: &str,
    input: &[u8],
    signature: &str,
    options: Value,
) -> bool {
    let mut body = options;
    body["input"] = json!(b64(input));
    body["signature"] = json!(signature);
    let data = harness.data(Update, &format!("transit/verify/{name}"), body);
    data["valid"].as_bool().unwrap()
}

fn check_signatures(harness: &mut Harness, kind: &str, options: Value) {
    let signature = sign(harness, kind, b"signed message", options.clone());
    assert!(signature.starts_with("vault:v1:"), "{kind}: {signature}");
    assert!(
        verify(
            harness,
            kind,
            b"signed message",
            &signature,
            options.clone()
        ),
        "{kind} {options}: a fresh signature must verify"
    );
    assert!(
        !verify(
            harness,
            kind,
            b"signed massage",
            &signature,
            options.clone()
        ),
        "{kind} {options}: a changed input must not verify"
    );
}

#[test]
fn ed25519_and_ecdsa_signatures_verify() {
    let mut harness = with_transit();
    for kind in ["ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"] {
        let data = create_key(&mut harness, kind, json!({"type": kind}));
        assert_eq!(data["supports_signing"], json!(true));
        assert_eq!(data["supports_encryption"], json!(false));
        check_signatures(&mut harness, kind, json!({}));
    }
    check_signatures(
        &mut harness,
        "ecdsa-p256",
        json!({"marshaling_algorithm": "jws"}),
    );
    check_signatures(
        &mut harness,
        "ecdsa-p384",
        json!({"hash_algorithm": "sha2-512"}),
    );
}

#[test]
fn ecdsa_prehashed_input_verifies() {
    let mut harness = with_transit();
    create_key(&mut harness, "p", json!({"type": "ecdsa-p256"}));
    let digest = super::hashing::HashAlgorithm::Sha2_256.digest(b"message");
    let prehashed = sign(&mut harness, "p", &digest, json!({"prehashed": true}));
    assert!(verify(&mut harness, "p", b"message", &prehashed, json!({})));
}

#[test]
fn rsa_signatures_verify() {
    let mut harness = with_transit();
    let data = create_key(&mut harness, "rsa-2048", json!({"type": "rsa-2048"}));
    let public_key = data["keys"]["1"]["public_key"].as_str().unwrap();
    assert!(
        public_key.starts_with("-----BEGIN PUBLIC KEY-----"),
        "{public_key}"
    );
    assert_eq!(data["keys"]["1"]["name"], json!("rsa-2048"));
    check_signatures(&mut harness, "rsa-2048", json!({}));
    check_signatures(
        &mut harness,
        "rsa-2048",
        json!({"signature_algorithm": "pkcs1v15"}),
    );
    check_signatures(
        &mut harness,
        "rsa-2048",
        json!({"hash_algorithm": "sha2-384", "salt_length": "hash"}),
    );
}

#[test]
fn public_keys_have_vault_shapes() {
    let mut harness = with_transit();
    let data = create_key(&mut harness, "e", json!({"type": "ed25519"}));
    let version = &data["keys"]["1"];
    assert_eq!(version["name"], json!("ed25519"));
    let public_key = STANDARD
        .decode(version["public_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(public_key.len(), 32);
    assert!(
        version["creation_time"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T")
    );

    let data = create_key(&mut harness, "p", json!({"type": "ecdsa-p256"}));
    assert_eq!(data["keys"]["1"]["name"], json!("P-256"));
    let pem = data["keys"]["1"]["public_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    let data = create_key(&mut harness, "q", json!({"type": "ecdsa-p521"}));
    assert_eq!(data["keys"]["1"]["name"], json!("P-521"));
    let pem = data["keys"]["1"]["public_key"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
}

#[test]
fn signature_from_old_version_respects_min_decryption_version() {
    let mut harness = with_transit();
    create_key(&mut harness, "e", json!({"type": "ed25519"}));
    let old = sign(&mut harness, "e", b"m", json!({}));
    harness.data(Update, "transit/keys/e/rotate", json!({}));
    assert!(verify(&mut harness, "e", b"m", &old, json!({})));
    harness.data(
        Update,
        "transit/keys/e/config",
        json!({"min_decryption_version": 2}),
    );
    let text = message(
        &mut harness,
        "transit/verify/e",
        json!({"input": b64(b"m"), "signature": old}),
    );
    assert!(
        text.starts_with("ciphertext or signature version is disallowed"),
        "{text}"
    );
}

#[test]
fn derived_ed25519_signs_per_context() {
    let mut harness = with_transit();
    create_key(
        &mut harness,
        "d",
        json!({"type": "ed25519", "derived": true}),
    );
    let context = json!({"context": b64(b"tenant-a")});
    let signature = sign(&mut harness, "d", b"m", context.clone());
    assert!(verify(&mut harness, "d", b"m", &signature, context));
    let other = json!({"context": b64(b"tenant-b")});
    assert!(!verify(&mut harness, "d", b"m", &signature, other));
    let text = message(&mut harness, "transit/sign/d", json!({"input": b64(b"m")}));
    assert!(text.starts_with("missing 'context'"), "{text}");
}

#[test]
fn signing_with_encryption_key_is_rejected() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let text = message(&mut harness, "transit/sign/k", json!({"input": b64(b"m")}));
    assert_eq!(text, "key type aes256-gcm96 does not support signing");
    let text = message(
        &mut harness,
        "transit/sign/none",
        json!({"input": b64(b"m")}),
    );
    assert!(text.starts_with("signing key not found"), "{text}");
}

#[test]
fn crypto_endpoints_run_without_writes() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    create_key(&mut harness, "e", json!({"type": "ed25519"}));
    let ciphertext = encrypt(&mut harness, "k", b"x");
    let signature = sign(&mut harness, "e", b"m", json!({}));
    let hmac = harness.data(Update, "transit/hmac/k", json!({"input": b64(b"m")}))["hmac"].clone();
    let requests = [
        ("transit/encrypt/k", json!({"plaintext": b64(b"x")})),
        ("transit/decrypt/k", json!({"ciphertext": ciphertext})),
        ("transit/rewrap/k", json!({"ciphertext": ciphertext})),
        ("transit/datakey/plaintext/k", json!({})),
        ("transit/sign/e", json!({"input": b64(b"m")})),
        (
            "transit/verify/e",
            json!({"input": b64(b"m"), "signature": signature}),
        ),
        ("transit/hmac/k", json!({"input": b64(b"m")})),
        (
            "transit/verify/k",
            json!({"input": b64(b"m"), "hmac": hmac}),
        ),
        ("transit/random", json!({})),
        ("transit/hash", json!({"input": b64(b"m")})),
    ];
    for (path, body) in requests {
        run_read_only(&mut harness, path, body);
    }
}

#[test]
fn key_management_writes_storage() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let request = Request::new(Update, "transit/keys/k/rotate");
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (core, now) = (&harness.core, harness.now);
    let result = harness
        .storage
        .read(|txn| {
            let mut read_only = ReadOnly(txn);
            let mut ctx = Ctx::new(now, &mut rng);
            crate::engines::handle(core, &mut ctx, &request, None, &mut read_only)
        })
        .unwrap();
    assert!(
        matches!(
            result,
            Err(crate::Error::Storage(
                crate::storage::StorageError::ReadOnly { .. }
            ))
        ),
        "{result:?}"
    );
}

#[test]
fn stored_keys_are_ciphertext() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({"type": "chacha20-poly1305"}));
    for (key, value) in harness.storage.dump(Partition::Shared) {
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains("chacha20"), "key type in clear at {key}");
        assert!(!text.contains("hmac_key"), "field name in clear at {key}");
    }
}

#[test]
fn policy_debug_hides_key_material() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let settings = super::key::NewKey::of_type(super::key::KeyType::Aes256Gcm96);
    let policy = super::key::Policy::create("k", &settings, harness_now(), &mut rng).unwrap();
    let debug = format!("{policy:?}");
    let secret = STANDARD.encode(policy.versions[&1].key.expose());
    assert!(debug.contains("KeyBytes(..)"), "{debug}");
    assert!(!debug.contains(&secret), "{debug}");
}

fn harness_now() -> crate::time::Timestamp {
    crate::time::Timestamp::from_secs(1_700_000_000)
}

#[test]
fn unsupported_operation_is_405() {
    let mut harness = with_transit();
    assert_eq!(harness.fail(Read, "transit/encrypt/k", json!({})).0, 405);
    assert_eq!(
        harness.fail(Delete, "transit/keys/k/rotate", json!({})).0,
        405
    );
}

#[test]
fn invalid_key_name_is_rejected() {
    let mut harness = with_transit();
    let text = message(&mut harness, "transit/keys/-bad", json!({}));
    assert!(text.starts_with("invalid key name \"-bad\""), "{text}");
}

#[test]
fn export_needs_exportable() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let (status, messages) = harness.fail(Read, "transit/export/encryption-key/k", json!({}));
    assert_eq!(status, 400);
    assert!(messages[0].starts_with("private key material is not exportable"));
}

#[test]
fn exported_key_decrypts_ciphertext() {
    use aes_gcm::aead::{Aead, KeyInit};

    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({"exportable": true}));
    let ciphertext = encrypt(&mut harness, "k", b"exported");
    let data = harness.data(Read, "transit/export/encryption-key/k/latest", json!({}));
    assert_eq!(data["name"], json!("k"));
    let key = STANDARD
        .decode(data["keys"]["1"].as_str().unwrap())
        .unwrap();
    let raw = STANDARD
        .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
        .unwrap();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
    let (nonce, sealed) = raw.split_at(12);
    let plaintext = cipher
        .decrypt(aes_gcm::Nonce::from_slice(nonce), sealed)
        .unwrap();
    assert_eq!(plaintext, b"exported");
}

#[test]
fn export_of_signing_keys_is_pem_or_base64() {
    let mut harness = with_transit();
    create_key(
        &mut harness,
        "e",
        json!({"type": "ed25519", "exportable": true}),
    );
    create_key(
        &mut harness,
        "p",
        json!({"type": "ecdsa-p384", "exportable": true}),
    );
    let data = harness.data(Read, "transit/export/signing-key/e", json!({}));
    let pair = STANDARD
        .decode(data["keys"]["1"].as_str().unwrap())
        .unwrap();
    assert_eq!(pair.len(), 64);
    let data = harness.data(Read, "transit/export/signing-key/p/1", json!({}));
    let pem = data["keys"]["1"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
    let data = harness.data(Read, "transit/export/public-key/p", json!({}));
    let pem = data["keys"]["1"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
}

#[test]
fn oversized_pss_salt_is_rejected() {
    let mut harness = with_transit();
    create_key(&mut harness, "r", json!({"type": "rsa-2048"}));
    let body = json!({"input": b64(b"m"), "salt_length": "18446744073709551615"});
    let text = message(&mut harness, "transit/sign/r", body);
    assert!(
        text.starts_with("invalid salt_length 18446744073709551615"),
        "{text}"
    );
    let body = json!({
        "input": b64(b"m"),
        "signature": "vault:v1:AAAA",
        "salt_length": "18446744073709551615",
    });
    let text = message(&mut harness, "transit/verify/r", body);
    assert!(text.starts_with("invalid salt_length"), "{text}");
}

#[test]
fn trim_removes_old_versions() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({}));
    let old = encrypt(&mut harness, "k", b"old");
    harness.data(Update, "transit/keys/k/rotate", json!({}));
    let text = message(
        &mut harness,
        "transit/keys/k/trim",
        json!({"min_available_version": 2}),
    );
    assert!(
        text.starts_with("minimum available version cannot be set"),
        "{text}"
    );
    harness.data(
        Update,
        "transit/keys/k/config",
        json!({"min_decryption_version": 2, "min_encryption_version": 2}),
    );
    let data = harness.data(
        Update,
        "transit/keys/k/trim",
        json!({"min_available_version": 2}),
    );
    assert_eq!(data["min_available_version"], json!(2));
    assert_eq!(data["keys"].as_object().unwrap().len(), 1);
    let text = message(
        &mut harness,
        "transit/decrypt/k",
        json!({"ciphertext": old}),
    );
    assert!(
        text.starts_with("ciphertext or signature version is disallowed"),
        "{text}"
    );
    let text = message(
        &mut harness,
        "transit/keys/k/config",
        json!({"min_decryption_version": 1}),
    );
    assert!(text.contains("versions below 2 were trimmed"), "{text}");
}

#[test]
fn backup_needs_plaintext_backup_allowed() {
    let mut harness = with_transit();
    create_key(&mut harness, "k", json!({"exportable": true}));
    let (status, messages) = harness.fail(Read, "transit/backup/k", json!({}));
    assert_eq!(status, 500);
    assert!(messages[0].starts_with("plaintext backup is disallowed on the policy"));
}

#[test]
fn restored_key_decrypts_old_ciphertext() {
    let mut harness = with_transit();
    let settings = json!({"exportable": true, "allow_plaintext_backup": true});
    create_key(&mut harness, "k", settings);
    let ciphertext = encrypt(&mut harness, "k", b"kept");
    let data = harness.data(Read, "transit/backup/k", json!({}));
    let backup = data["backup"].as_str().unwrap().to_owned();

    let (status, messages) = harness.fail(Update, "transit/restore/k", json!({"backup": backup}));
    assert_eq!(status, 500);
    assert!(messages[0].contains("already exists"), "{messages:?}");

    harness.ok(Update, "transit/restore/copy", json!({"backup": backup}));
    assert_eq!(decrypt(&mut harness, "copy", &ciphertext), b"kept");
    harness.ok(
        Update,
        "transit/restore/k",
        json!({"backup": backup, "force": true}),
    );
    assert_eq!(decrypt(&mut harness, "k", &ciphertext), b"kept");
}

/// Runs `request` through the ACL as a caller holding only the policy `policy`.
fn run_with_policy(harness: &mut Harness, policy: &str, path: &str, body: Value) -> u16 {
    let caller = crate::request::Caller {
        policies: vec![policy.to_owned()],
        token_hash: "t2".into(),
        ..Default::default()
    };
    let request = Request::new(Update, path).with_data(body);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (core, now) = (&harness.core, harness.now);
    let result = harness.storage.write(|txn| {
        let mut ctx = Ctx::new(now, &mut rng);
        let result = core.dispatch(&mut ctx, &request, Some(&caller), txn);
        Ok::<_, crate::Error>(result)
    });
    match result.unwrap() {
        Ok(_) => 200,
        Err(error) => error.status(),
    }
}

#[test]
fn encrypt_of_missing_key_needs_create() {
    let mut harness = with_transit();
    let update_only = r#"path "transit/encrypt/*" { capabilities = ["update"] }"#;
    let with_create = r#"path "transit/encrypt/*" { capabilities = ["create", "update"] }"#;
    harness.ok(
        Update,
        "sys/policy/update-only",
        json!({"policy": update_only}),
    );
    harness.ok(
        Update,
        "sys/policy/with-create",
        json!({"policy": with_create}),
    );
    let body = json!({"plaintext": b64(b"x")});

    let status = run_with_policy(
        &mut harness,
        "update-only",
        "transit/encrypt/new",
        body.clone(),
    );
    assert_eq!(status, 403);
    assert_eq!(harness.fail(Read, "transit/keys/new", json!({})).0, 404);

    let status = run_with_policy(
        &mut harness,
        "with-create",
        "transit/encrypt/new",
        body.clone(),
    );
    assert_eq!(status, 200);
    let status = run_with_policy(&mut harness, "update-only", "transit/encrypt/new", body);
    assert_eq!(status, 200);
}
