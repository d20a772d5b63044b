//! Catch-up of a stopped secondary: by WAL when the primary still stores the entries it missed,
//! by Merkle sync when it does not.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use coffer_tests::ServerOptions;
use coffer_tests::cluster::{ReplicaSet, last_wal, performance_status};
use tokio::runtime::Runtime;

use crate::client::{Bound, Call, Target, run_load};
use crate::options::Options;
use crate::peak_rss;
use crate::stats::Row;
use crate::workloads::SERVER_LOG_LEVEL;

/// Connections that load keys into the primary.
const LOAD_CONCURRENCY: usize = 64;

/// Connections that change keys while the Merkle secondary is stopped.
const CHANGE_CONCURRENCY: usize = 4;

/// Maximum time a load of keys or a catch-up may take before the bench gives up.
const LONG_STEP_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Size of every value the bench writes, in bytes.
pub(crate) const VALUE_SIZE: usize = 1024;

/// Returns a KV v2 write body whose value has [`VALUE_SIZE`] bytes, tagged with `version`.
pub(crate) fn kv_body(version: u64) -> Bytes {
    let tag = format!("v{version}-");
    let value = format!("{tag}{}", "x".repeat(VALUE_SIZE - tag.len()));
    Bytes::from(serde_json::json!({ "data": { "value": value } }).to_string())
}

/// The keys a load writes: `count` keys `<prefix>-<n>` with `n` a multiple of `step`, each with
/// a 1 KiB value tagged `version`.
pub(crate) struct Keys<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) count: u64,
    pub(crate) step: u64,
    pub(crate) version: u64,
}

/// Writes `keys` over `concurrency` connections.
pub(crate) fn write_keys(
    runtime: &Runtime,
    target: &Target,
    keys: &Keys<'_>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let Keys {
        prefix,
        count,
        step,
        version,
    } = *keys;
    let body = kv_body(version);
    let prefix = prefix.to_owned();
    let make_call = Arc::new(move |number: u64| {
        Call::post(
            format!("/v1/secret/data/{prefix}-{}", number * step),
            body.clone(),
        )
    });
    let bound = Bound {
        requests: count,
        duration: LONG_STEP_TIMEOUT,
    };
    let started = Instant::now();
    let sample = runtime.block_on(run_load(target, concurrency, bound, make_call))?;
    if (sample.count() as u64) < count {
        bail!(
            "wrote only {} of {count} keys within {LONG_STEP_TIMEOUT:?}",
            sample.count()
        );
    }
    Ok(started.elapsed())
}

/// What a catch-up took.
pub(crate) struct CatchUp {
    /// From the unseal of the restarted secondary to streaming at the primary's last index.
    pub(crate) time: Duration,
    /// Bytes the secondary received from the primary since it started.
    pub(crate) bytes_received: u64,
    /// Bytes the secondary sent to the primary since it started.
    pub(crate) bytes_sent: u64,
    /// The replication states the secondary passed through, as status reported them.
    pub(crate) states: BTreeSet<String>,
}

/// Starts the stopped secondary `index` of `set` again, unseals it with the primary's keys and
/// waits until it streams at the primary's last WAL index.
pub(crate) fn restart_and_catch_up(set: &mut ReplicaSet, index: usize) -> anyhow::Result<CatchUp> {
    let target = last_wal(&set.primary)?;
    let shares: Vec<&str> = set.keys.keys.iter().take(3).map(String::as_str).collect();
    let secondary = &mut set.secondaries[index].server;
    secondary.restart()?;
    secondary.unseal(&shares)?;
    let started = Instant::now();
    let mut states = BTreeSet::new();
    loop {
        let status = performance_status(secondary)?;
        let state = status["state"].as_str().unwrap_or("unknown").to_owned();
        let applied = status["last_remote_wal"].as_u64().unwrap_or(0);
        let streaming = state == "stream-wals";
        states.insert(state);
        if streaming && applied >= target {
            let counter = |name: &str| {
                status[name]
                    .as_u64()
                    .with_context(|| format!("the secondary's status has no {name}"))
            };
            return Ok(CatchUp {
                time: started.elapsed(),
                bytes_received: counter("bytes_received")?,
                bytes_sent: counter("bytes_sent")?,
                states,
            });
        }
        if started.elapsed() > LONG_STEP_TIMEOUT {
            bail!(
                "the secondary did not reach WAL {target} within {LONG_STEP_TIMEOUT:?}: {status}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Returns `bytes` in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Stops the secondary of `set`, writes `options.wal_writes` keys on the primary, restarts the
/// secondary and measures its catch-up.
pub(crate) fn run_wal(
    runtime: &Runtime,
    set: &mut ReplicaSet,
    primary: &Target,
    options: &Options,
) -> anyhow::Result<Row> {
    set.secondaries[0].server.stop()?;
    let writes = options.wal_writes;
    let keys = Keys {
        prefix: "behind",
        count: writes,
        step: 1,
        version: 1,
    };
    write_keys(runtime, primary, &keys, LOAD_CONCURRENCY)?;
    let caught_up = restart_and_catch_up(set, 0)?;
    let rate = writes as f64 / caught_up.time.as_secs_f64().max(1e-9);
    let operation = format!("WAL catch-up of {writes} writes");
    let mut row = Row::note(
        &operation,
        format!(
            "{:.2} s, {:.1} MiB received, {:.1} MiB sent, states {}",
            caught_up.time.as_secs_f64(),
            mib(caught_up.bytes_received),
            mib(caught_up.bytes_sent),
            join(&caught_up.states)
        ),
    );
    row.rate = Some(rate);
    Ok(row)
}

/// Loads `options.merkle_keys` keys into a primary and its secondary, stops the secondary,
/// changes 1% of the keys and measures the Merkle catch-up. The primary keeps only 16 WAL
/// entries in memory and on disk, so the changes cannot travel by WAL.
pub(crate) fn run_merkle(runtime: &Runtime, options: &Options) -> anyhow::Result<Vec<Row>> {
    let small_wal = ServerOptions::default()
        .log_level(SERVER_LOG_LEVEL)
        .extra_config("replication {\n  logshipper_buffer_length = 16\n  wal_retain = 16\n}");
    let mut set = ReplicaSet::start_with(1, &small_wal)?;
    let admin = set.primary.api(set.root())?;
    admin.enable_kv("secret", "2")?;
    let primary = Target::vault(&set.primary.address(), set.root())?;

    let keys = options.merkle_keys;
    let initial = Keys {
        prefix: "merkle",
        count: keys,
        step: 1,
        version: 1,
    };
    let loaded = write_keys(runtime, &primary, &initial, LOAD_CONCURRENCY)?;
    wait_converged(&set)?;

    set.secondaries[0].server.stop()?;
    let changed = keys / 100;
    // Concurrent writes share WAL entries, at most one entry per write in flight, so
    // CHANGE_CONCURRENCY connections produce at least `changed / CHANGE_CONCURRENCY` entries:
    // more than the 16 the primary keeps once 68 or more keys change.
    let changes = Keys {
        prefix: "merkle",
        count: changed,
        step: 100,
        version: 2,
    };
    write_keys(runtime, &primary, &changes, CHANGE_CONCURRENCY)?;
    let caught_up = restart_and_catch_up(&mut set, 0)?;
    let changed_bytes = changed * VALUE_SIZE as u64;
    let operation = format!("Merkle catch-up, {keys} keys, {changed} changed");
    let mut catch_up = Row::note(
        &operation,
        format!(
            "{:.2} s, {:.1} MiB received = {:.2}x the {:.1} MiB changed, {:.1} MiB sent \
             (both ways {:.2}x), states {}; loading took {:.0} s",
            caught_up.time.as_secs_f64(),
            mib(caught_up.bytes_received),
            caught_up.bytes_received as f64 / changed_bytes as f64,
            mib(changed_bytes),
            mib(caught_up.bytes_sent),
            (caught_up.bytes_received + caught_up.bytes_sent) as f64 / changed_bytes as f64,
            join(&caught_up.states),
            loaded.as_secs_f64()
        ),
    );
    catch_up.rate = Some(changed as f64 / caught_up.time.as_secs_f64().max(1e-9));
    let rss = Row::note(
        "peak RSS, Merkle primary / secondary",
        format!(
            "{} / {}",
            peak_rss(set.primary.pid()),
            peak_rss(set.secondaries[0].server.pid())
        ),
    );
    Ok(vec![catch_up, rss])
}

/// Waits until the secondary streams at the primary's last WAL index, for as long as a large
/// load may take to replicate.
fn wait_converged(set: &ReplicaSet) -> anyhow::Result<()> {
    let target = last_wal(&set.primary)?;
    let started = Instant::now();
    loop {
        let status = performance_status(&set.secondaries[0].server)?;
        if status["state"] == "stream-wals" && status["last_remote_wal"].as_u64() >= Some(target) {
            return Ok(());
        }
        if started.elapsed() > LONG_STEP_TIMEOUT {
            bail!(
                "the secondary did not reach WAL {target} within {LONG_STEP_TIMEOUT:?}: {status}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn join(states: &BTreeSet<String>) -> String {
    states.iter().cloned().collect::<Vec<_>>().join(", ")
}
