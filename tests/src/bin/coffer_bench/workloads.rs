//! The workloads on one primary and one secondary: reads, durable writes, a forwarded write,
//! transit, replication delay and WAL catch-up, each next to its reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use coffer_tests::Server;
use coffer_tests::ServerOptions;
use coffer_tests::cluster::{ReplicaSet, last_wal};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::sync::Mutex;

use crate::catch_up::{self, Keys, VALUE_SIZE, kv_body, write_keys};
use crate::client::{Bound, Call, Connection, MakeCall, Target, run_load};
use crate::options::Options;
use crate::peak_rss;
use crate::reference::{Etcd, HttpLimit, etcd_put, lmdb_commits};
use crate::stats::{Row, Sample, millis, ratio};

/// The servers' log level. At `debug` a server logs a line per request, which measures the
/// log file rather than the server.
pub(crate) const SERVER_LOG_LEVEL: &str = "info";

/// Connections of the read and transit loads.
const READ_CONCURRENCY: usize = 32;

/// Connections of the durable write loads.
const WRITE_CONCURRENCIES: [usize; 3] = [1, 16, 64];

/// Distinct keys the read loads cycle through.
const READ_KEYS: u64 = 1000;

/// Write rate of the replication delay workload, per second.
const DELAY_RATE: u64 = 1000;

/// Connections of the replication delay writer; the schedule, not the connections, sets the
/// rate while the primary keeps up.
const DELAY_CONCURRENCY: usize = 64;

/// Runs every workload of the first replica set and returns the rows in print order.
pub(crate) fn run(runtime: &Runtime, options: &Options) -> anyhow::Result<Vec<Row>> {
    let retain = format!(
        "replication {{\n  wal_retain = {}\n}}",
        (options.wal_writes * 2).max(65_536)
    );
    let server_options = ServerOptions::default()
        .log_level(SERVER_LOG_LEVEL)
        .extra_config(&retain);
    let mut set = ReplicaSet::start_with(1, &server_options)?;
    prepare(&set)?;
    let primary = Target::vault(&set.primary.address(), set.root())?;
    let secondary_server = &set.secondaries[0];
    let secondary = Target::vault(
        &secondary_server.server.address(),
        &secondary_server.root_token,
    )?;
    let bound = Bound {
        requests: options.load_requests,
        duration: options.load_time,
    };
    let reads = Keys {
        prefix: "read",
        count: READ_KEYS,
        step: 1,
        version: 1,
    };
    write_keys(runtime, &primary, &reads, 16)?;
    set.wait_converged()?;

    let mut rows = read_rows(runtime, &primary, &secondary, bound)?;
    rows.extend(write_rows(runtime, &set.primary, &primary, bound)?);
    rows.push(forwarded_write_row(runtime, &primary, &secondary, bound)?);
    rows.extend(transit_rows(runtime, &secondary, bound)?);
    rows.push(delay_row(runtime, &primary, &secondary, options)?);
    rows.push(catch_up::run_wal(runtime, &mut set, &primary, options)?);
    rows.push(Row::note(
        "peak RSS, primary / secondary",
        format!(
            "{} / {}",
            peak_rss(set.primary.pid()),
            peak_rss(set.secondaries[0].server.pid())
        ),
    ));
    Ok(rows)
}

/// Mounts KV v2 at `secret` and transit at `transit` with an `aes256-gcm96` key `bench`.
fn prepare(set: &ReplicaSet) -> anyhow::Result<()> {
    let admin = set.primary.api(set.root())?;
    admin.enable_kv("secret", "2")?;
    for (path, body) in [
        ("sys/mounts/transit", json!({"type": "transit"})),
        ("transit/keys/bench", json!({"type": "aes256-gcm96"})),
    ] {
        let response = admin.post(path, &body)?;
        if response.status != 200 && response.status != 204 {
            anyhow::bail!(
                "POST {path} returned {}: {}",
                response.status,
                response.text
            );
        }
    }
    Ok(())
}

fn read_rows(
    runtime: &Runtime,
    primary: &Target,
    secondary: &Target,
    bound: Bound,
) -> anyhow::Result<Vec<Row>> {
    let read: MakeCall =
        Arc::new(|number| Call::get(format!("/v1/secret/data/read-{}", number % READ_KEYS)));
    // The HTTP limit serves the exact body a read returns, so both move the same bytes.
    let body = runtime.block_on(async {
        let mut connection = Connection::open(primary).await?;
        connection.send(&read(0)).await
    })?;
    let server = HttpLimit::start(body.clone())?;
    let limit_target = Target::plain(server.address());
    let limit = runtime.block_on(run_load(
        &limit_target,
        READ_CONCURRENCY,
        bound,
        Arc::clone(&read),
    ))?;
    server.stop();
    let limit_rate = limit.ops_per_second();
    let on_secondary = runtime.block_on(run_load(
        secondary,
        READ_CONCURRENCY,
        bound,
        Arc::clone(&read),
    ))?;
    let on_primary = runtime.block_on(run_load(primary, READ_CONCURRENCY, bound, read))?;
    let size = format!("{} B body", body.len());
    Ok(vec![
        Row::load(
            "HTTP limit: hyper returning a stored read body",
            READ_CONCURRENCY,
            &limit,
            size,
        ),
        Row::load(
            "KV v2 read, 1 KiB, on the secondary",
            READ_CONCURRENCY,
            &on_secondary,
            ratio(on_secondary.ops_per_second(), limit_rate, "HTTP limit"),
        ),
        Row::load(
            "KV v2 read, 1 KiB, on the primary",
            READ_CONCURRENCY,
            &on_primary,
            ratio(on_primary.ops_per_second(), limit_rate, "HTTP limit"),
        ),
    ])
}

fn write_rows(
    runtime: &Runtime,
    server: &Server,
    primary: &Target,
    bound: Bound,
) -> anyhow::Result<Vec<Row>> {
    let value = vec![b'x'; VALUE_SIZE];
    let dir = tempfile::tempdir().context("failed to create a directory for LMDB")?;
    let commits = lmdb_commits(dir.path(), &value, bound)?;
    let commit_rate = commits.ops_per_second();
    let commit_time = commits.percentile(0.5);
    let mut rows = vec![Row::load(
        "storage limit: fsync'd LMDB commit of 1 KiB",
        1,
        &commits,
        "-".to_owned(),
    )];

    let etcd = match Etcd::find() {
        Some(binary) => Some(Etcd::start(&binary)?),
        None => None,
    };
    for concurrency in WRITE_CONCURRENCIES {
        let make_call: MakeCall = Arc::new(move |number| {
            Call::post(
                format!("/v1/secret/data/write-{concurrency}-{number}"),
                kv_body(number),
            )
        });
        let before = last_wal(server)?;
        let writes = runtime.block_on(run_load(primary, concurrency, bound, make_call))?;
        let after = last_wal(server)?;
        let peer = match &etcd {
            Some(etcd) => Some(runtime.block_on(run_load(
                &Target::plain(etcd.address()),
                concurrency,
                bound,
                etcd_put(&value),
            ))?),
            None => None,
        };
        let mut versus = vec![ratio(writes.ops_per_second(), commit_rate, "LMDB commits")];
        versus.push(writes_per_commit(writes.count(), before, after));
        match &peer {
            Some(peer) => versus.push(ratio(
                writes.ops_per_second(),
                peer.ops_per_second(),
                "etcd",
            )),
            None => versus.push("etcd absent from PATH".to_owned()),
        }
        if concurrency == 1 {
            versus.push(format!(
                "p50 {:.2}x one commit's {}",
                writes.percentile(0.5).as_secs_f64() / commit_time.as_secs_f64().max(1e-9),
                millis(commit_time)
            ));
        }
        rows.push(Row::load(
            "durable KV v2 write, 1 KiB, on the primary",
            concurrency,
            &writes,
            versus.join(", "),
        ));
        if let Some(peer) = peer {
            rows.push(Row::load(
                "peer: etcd put, 1 KiB",
                concurrency,
                &peer,
                "-".to_owned(),
            ));
        }
    }
    if let Some(etcd) = &etcd {
        rows.push(Row::note("peak RSS, etcd", peak_rss(Some(etcd.pid()))));
    }
    Ok(rows)
}

/// Returns how many writes shared each commit: `writes` over the number of WAL entries the
/// primary logged between `before` and `after`, one entry per commit.
fn writes_per_commit(writes: usize, before: u64, after: u64) -> String {
    let commits = after.saturating_sub(before).max(1);
    format!("{:.1} writes per commit", writes as f64 / commits as f64)
}

/// Measures a write sent to the secondary, which forwards it to the primary, against the same
/// write on the primary, both at concurrency 1.
fn forwarded_write_row(
    runtime: &Runtime,
    primary: &Target,
    secondary: &Target,
    bound: Bound,
) -> anyhow::Result<Row> {
    let operation = "forwarded KV v2 write, 1 KiB, on the secondary";
    let probe = Call::post("/v1/secret/data/forward-probe".to_owned(), kv_body(0));
    let (status, body) = runtime.block_on(async {
        let mut connection = Connection::open(secondary).await?;
        connection.send_any(&probe).await
    })?;
    if status != 200 && status != 204 {
        let reason = String::from_utf8_lossy(&body);
        return Ok(Row::note(
            operation,
            format!(
                "not available: the secondary returned {status} {}",
                reason.trim()
            ),
        ));
    }
    let make_call = |prefix: &'static str| -> MakeCall {
        Arc::new(move |number| {
            Call::post(
                format!("/v1/secret/data/{prefix}-{number}"),
                kv_body(number),
            )
        })
    };
    let direct = runtime.block_on(run_load(primary, 1, bound, make_call("direct")))?;
    let forwarded = runtime.block_on(run_load(secondary, 1, bound, make_call("forwarded")))?;
    let extra = forwarded.percentile(0.5).as_secs_f64() - direct.percentile(0.5).as_secs_f64();
    Ok(Row::load(
        operation,
        1,
        &forwarded,
        format!(
            "p50 {:+.3} ms over the direct write's {}",
            extra * 1e3,
            millis(direct.percentile(0.5))
        ),
    ))
}

fn transit_rows(runtime: &Runtime, secondary: &Target, bound: Bound) -> anyhow::Result<Vec<Row>> {
    let plaintext = STANDARD.encode(vec![b'p'; VALUE_SIZE]);
    let encrypt_body = Bytes::from(json!({ "plaintext": plaintext }).to_string());
    let encrypt = Call::post("/v1/transit/encrypt/bench".to_owned(), encrypt_body);
    let response = runtime.block_on(async {
        let mut connection = Connection::open(secondary).await?;
        connection.send(&encrypt).await
    })?;
    let response: Value = serde_json::from_slice(&response)?;
    let ciphertext = response["data"]["ciphertext"]
        .as_str()
        .context("transit encrypt returned no data.ciphertext")?;
    let decrypt = Call::post(
        "/v1/transit/decrypt/bench".to_owned(),
        Bytes::from(json!({ "ciphertext": ciphertext }).to_string()),
    );
    let encrypts = runtime.block_on(run_load(
        secondary,
        READ_CONCURRENCY,
        bound,
        Arc::new(move |_| encrypt.clone()),
    ))?;
    let decrypts = runtime.block_on(run_load(
        secondary,
        READ_CONCURRENCY,
        bound,
        Arc::new(move |_| decrypt.clone()),
    ))?;
    Ok(vec![
        Row::load(
            "transit encrypt, 1 KiB, aes256-gcm96, on the secondary",
            READ_CONCURRENCY,
            &encrypts,
            "-".to_owned(),
        ),
        Row::load(
            "transit decrypt, 1 KiB, aes256-gcm96, on the secondary",
            READ_CONCURRENCY,
            &decrypts,
            "-".to_owned(),
        ),
    ])
}

/// Writes versions of one key on the primary at [`DELAY_RATE`] per second while one connection
/// reads the key on the secondary in a loop. The delay of version `v` is the time from its
/// acknowledgement to the end of the first read that returned `v` or a later version, so it
/// includes up to one read's round trip.
fn delay_row(
    runtime: &Runtime,
    primary: &Target,
    secondary: &Target,
    options: &Options,
) -> anyhow::Result<Row> {
    let writes = DELAY_RATE * options.load_time.as_secs().max(1);
    let (acknowledged, seen, elapsed) =
        runtime.block_on(measure_delay(primary, secondary, writes))?;
    let mut delays = Vec::with_capacity(acknowledged.len());
    for (version, at) in &acknowledged {
        let Some(visible) = seen
            .iter()
            .find(|(seen_version, _)| seen_version >= version)
            .map(|(_, seen_at)| *seen_at)
        else {
            anyhow::bail!("version {version} never became visible on the secondary");
        };
        delays.push(visible.saturating_duration_since(*at));
    }
    let write_rate = acknowledged.len() as f64 / elapsed.as_secs_f64().max(1e-9);
    let sample = Sample::new(delays, elapsed);
    let mut row = Row::load(
        "replication delay, primary acknowledgement to visible on the secondary",
        DELAY_CONCURRENCY,
        &sample,
        format!("{} writes at {write_rate:.0} writes/s", acknowledged.len()),
    );
    row.rate = Some(write_rate);
    Ok(row)
}

/// Acknowledgement times by version, the times the reader first saw each newer version, and
/// the writers' wall time.
type DelayTrace = (Vec<(u64, Instant)>, Vec<(u64, Instant)>, Duration);

async fn measure_delay(
    primary: &Target,
    secondary: &Target,
    writes: u64,
) -> anyhow::Result<DelayTrace> {
    let path = "/v1/secret/data/delay".to_owned();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut writers =
        spawn_delay_writers(primary, &path, writes, started, Arc::clone(&acknowledged)).await?;

    let mut reader = Connection::open(secondary).await?;
    let read = Call::get(path);
    let mut seen = Vec::new();
    let mut last_version = 0;
    let read_deadline = started + Duration::from_secs(writes / DELAY_RATE + 30);
    let mut writing_time = None;
    while !writers.is_empty() || last_version < writes {
        while let Some(joined) = writers.try_join_next() {
            joined.context("a delay writer panicked")??;
        }
        if writers.is_empty() && writing_time.is_none() {
            writing_time = Some(started.elapsed());
        }
        if Instant::now() > read_deadline {
            anyhow::bail!("the secondary did not show version {writes} of the delay key in time");
        }
        let (status, body) = reader.send_any(&read).await?;
        if status != 200 {
            continue;
        }

        let response: Value = serde_json::from_slice(&body)?;
        let version = response["data"]["metadata"]["version"]
            .as_u64()
            .unwrap_or(0);
        if version > last_version {
            last_version = version;
            seen.push((version, Instant::now()));
        }
    }

    let elapsed = writing_time.unwrap_or_else(|| started.elapsed());
    let acknowledged = std::mem::take(&mut *acknowledged.lock().await);
    Ok((acknowledged, seen, elapsed))
}

/// Starts [`DELAY_CONCURRENCY`] writers that send write `n` to `path` at `started` plus `n`
/// thousandths of a second and record each acknowledged version with its time.
async fn spawn_delay_writers(
    primary: &Target,
    path: &str,
    writes: u64,
    started: Instant,
    acknowledged: Arc<Mutex<Vec<(u64, Instant)>>>,
) -> anyhow::Result<tokio::task::JoinSet<anyhow::Result<()>>> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..DELAY_CONCURRENCY {
        let mut connection = Connection::open(primary).await?;
        let (acknowledged, next, path) = (
            Arc::clone(&acknowledged),
            Arc::clone(&next),
            path.to_owned(),
        );
        writers.spawn(async move {
            loop {
                let number = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if number >= writes {
                    return Ok::<_, anyhow::Error>(());
                }
                let due = started + Duration::from_micros(number * 1_000_000 / DELAY_RATE);
                tokio::time::sleep_until(due.into()).await;
                let body = connection
                    .send(&Call::post(path.clone(), kv_body(number)))
                    .await?;
                let at = Instant::now();
                let response: Value = serde_json::from_slice(&body)?;
                let version = response["data"]["version"]
                    .as_u64()
                    .context("the write returned no data.version")?;
                acknowledged.lock().await.push((version, at));
            }
        });
    }
    Ok(writers)
}
