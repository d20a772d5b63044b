//! Costs of transit encrypt and decrypt of 1 KiB with an `aes256-gcm96` key. Each request runs
//! the whole pipeline (`Core::handle_request`: token check, ACL, routing, key load through the
//! barrier, AEAD) on a `MemStorage` read-only snapshot, as a server runs it.
//!
//! `cargo bench -p coffer-core --bench transit`; docs/benchmarks.md has the figures.

// A benchmark measures wall time and prints figures: it is a tool run beside the core, not
// part of the deterministic core the clippy bans protect.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::barrier::Keyring;
use coffer_core::request::{Operation, Request, Response};
use coffer_core::storage::{MemStorage, ReadOnly, Storage};
use coffer_core::{Core, CoreConfig, Ctx, Error, Outcome, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// An unsealed core with a transit mount and a key `bench`, and its root token.
struct Server {
    core: Core,
    storage: MemStorage,
    token: String,
    rng: ChaCha20Rng,
}

impl Server {
    fn new() -> Server {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let core = Core::new(CoreConfig::default());
        core.barrier
            .set_keyring(Some(Arc::new(Keyring::generate(&mut rng, NOW))));
        let storage = MemStorage::new();
        let token = storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, &mut rng)?;
                coffer_core::mounts::initialize(&core, &mut view, NOW)?;
                let token = coffer_core::token::create_root_token(&core, &mut view, NOW)?;
                Ok::<String, Error>(token.expose().to_owned())
            })
            .expect("initialising an in-memory core cannot fail");
        let mut server = Server {
            core,
            storage,
            token,
            rng,
        };
        server.write("sys/mounts/transit", json!({"type": "transit"}));
        server.write("transit/keys/bench", json!({"type": "aes256-gcm96"}));
        server
    }

    fn request(&self, path: &str, body: Value) -> Request {
        Request::new(Operation::Update, path)
            .with_data(body)
            .with_token(self.token.clone())
    }

    fn write(&mut self, path: &str, body: Value) {
        let request = self.request(path, body);
        let (core, rng) = (&self.core, &mut self.rng);
        let outcome = self
            .storage
            .write(|txn| {
                let mut ctx = Ctx::new(NOW, rng);
                Ok::<Outcome, Error>(core.handle_request(&mut ctx, &request, txn))
            })
            .expect("an in-memory write cannot fail");
        assert!(
            matches!(outcome, Outcome::Response(_)),
            "{path}: {outcome:?}"
        );
    }

    /// Runs `request` on a read-only snapshot and returns the `data` field `field`.
    fn read_only(&mut self, request: &Request, field: &str) -> String {
        let (core, rng) = (&self.core, &mut self.rng);
        let outcome = self
            .storage
            .read(|txn| {
                let mut ctx = Ctx::new(NOW, rng);
                core.handle_request(&mut ctx, request, &mut ReadOnly(txn))
            })
            .expect("an in-memory read cannot fail");
        match outcome {
            Outcome::Response(Response::Logical(logical)) => logical
                .data
                .and_then(|data| data.get(field)?.as_str().map(str::to_owned))
                .expect("the response carries the field"),
            other => panic!("{}: {other:?}", request.path),
        }
    }
}

fn encrypt_decrypt_1kib(c: &mut Criterion) {
    let mut server = Server::new();
    let plaintext = STANDARD.encode([0x5a; 1024]);
    let encrypt = server.request("transit/encrypt/bench", json!({"plaintext": plaintext}));
    let ciphertext = server.read_only(&encrypt, "ciphertext");
    let decrypt = server.request("transit/decrypt/bench", json!({"ciphertext": ciphertext}));
    assert_eq!(server.read_only(&decrypt, "plaintext"), plaintext);

    print_rate(&mut server, &encrypt, "ciphertext", "encrypt");
    print_rate(&mut server, &decrypt, "plaintext", "decrypt");

    let mut group = c.benchmark_group("transit_aes256_gcm96_1kib");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("encrypt", |b| {
        b.iter(|| black_box(server.read_only(&encrypt, "ciphertext")))
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| black_box(server.read_only(&decrypt, "plaintext")))
    });
    group.finish();
}

/// Prints the mean time of 2,000 requests, a quick figure beside criterion's statistics.
fn print_rate(server: &mut Server, request: &Request, field: &str, name: &str) {
    const REQUESTS: u32 = 2_000;
    let started = Instant::now();
    for _ in 0..REQUESTS {
        black_box(server.read_only(request, field));
    }
    let each = started.elapsed() / REQUESTS;
    let per_second = 1.0 / each.as_secs_f64();
    println!("transit {name} of 1 KiB: {each:?} per request, {per_second:.0} requests/s");
}

criterion_group!(benches, encrypt_decrypt_1kib);
criterion_main!(benches);
