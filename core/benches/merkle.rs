//! Costs of the Merkle index: one update per write, and a top-down diff of two large stores.
//!
//! `cargo bench -p coffer-core --bench merkle`. The diff group first builds two stores of
//! 1,000,000 keys, which took 26 s on a shared 2-core machine.

// A benchmark measures wall time and prints figures: it is a tool run beside the core, not
// part of the deterministic core the clippy bans protect.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use coffer_core::replication::apply::apply_ops;
use coffer_core::replication::merkle::{BUCKETS_PER_PAGE, Merkle, PAGES};
use coffer_core::replication::wal::Op;
use coffer_core::storage::{MemStorage, Overlay, Storage, StorageError, Transaction};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const VALUE: [u8; 64] = [7; 64];

fn put(key: String) -> Op {
    Op::Put {
        key,
        value: VALUE.to_vec(),
    }
}

/// Returns a store holding `count` keys and their index, built in one transaction.
fn store_with(count: usize, changed: usize) -> MemStorage {
    let storage = MemStorage::new();
    storage
        .write(|txn| {
            let ops: Vec<Op> = (0..count)
                .map(|n| put(format!("logical/m/key-{n}")))
                .collect();
            apply_ops(txn, &ops)?;
            let step = count / changed.max(1);
            let changes: Vec<Op> = (0..changed)
                .map(|n| Op::Put {
                    key: format!("logical/m/key-{}", n * step),
                    value: b"changed".to_vec(),
                })
                .collect();
            apply_ops(txn, &changes)?;
            Ok::<(), StorageError>(())
        })
        .expect("building an in-memory store cannot fail");
    storage
}

/// Returns the keys whose leaves differ between two indexes, found top-down as a sync does: root
/// pages, then buckets of differing pages, then members of differing buckets.
fn differing_keys(
    local: &dyn Transaction,
    remote: &dyn Transaction,
) -> Result<Vec<String>, StorageError> {
    let mut keys = Vec::new();
    let (local_pages, remote_pages) = (Merkle::pages(local)?, Merkle::pages(remote)?);
    for page in (0..PAGES).filter(|page| local_pages[*page] != remote_pages[*page]) {
        let page = page as u8;
        let (local_page, remote_page) = (Merkle::page(local, page)?, Merkle::page(remote, page)?);
        for slot in (0..BUCKETS_PER_PAGE).filter(|slot| local_page[*slot] != remote_page[*slot]) {
            let bucket = (u16::from(page) << 8) | slot as u16;
            let local_members = Merkle::bucket(local, bucket)?;
            for member in Merkle::bucket(remote, bucket)? {
                if !local_members.contains(&member) {
                    keys.push(member.0);
                }
            }
        }
    }
    Ok(keys)
}

fn update_per_write(c: &mut Criterion) {
    let storage = store_with(100_000, 0);
    let mut group = c.benchmark_group("merkle_update");
    group.bench_function("one_put_over_100k_keys", |b| {
        storage
            .read(|snapshot| {
                let mut counter = 0u64;
                b.iter_batched(
                    || {
                        counter += 1;
                        put(format!("logical/m/new-{counter}"))
                    },
                    |op| {
                        let mut overlay = Overlay::new(snapshot);
                        Merkle::apply(&mut overlay, std::slice::from_ref(&op))
                            .expect("an overlay write cannot fail");
                        black_box(overlay.writes().len())
                    },
                    BatchSize::SmallInput,
                );
            })
            .expect("reading an in-memory store cannot fail");
    });
    group.finish();
}

fn diff_million(c: &mut Criterion) {
    let started = Instant::now();
    let primary = store_with(1_000_000, 0);
    let secondary = store_with(1_000_000, 1_000);
    println!(
        "built two stores of 1,000,000 keys in {:?}",
        started.elapsed()
    );
    let mut group = c.benchmark_group("merkle_diff");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("1m_keys_1k_changed", |b| {
        primary
            .read(|remote| {
                secondary
                    .read(|local| {
                        b.iter(|| {
                            let keys = differing_keys(local, remote).expect("reads cannot fail");
                            assert_eq!(keys.len(), 1_000);
                            black_box(keys)
                        })
                    })
                    .expect("reading an in-memory store cannot fail")
            })
            .expect("reading an in-memory store cannot fail");
    });
    group.finish();
}

criterion_group!(benches, update_per_write, diff_million);
criterion_main!(benches);
