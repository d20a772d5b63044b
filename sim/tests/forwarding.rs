//! Writes through a secondary while the link between the secondary and the primary loses,
//! holds, delays or duplicates the forwarded request or its response. Every forwarded write
//! applies exactly once, whatever response the client received.
//!
//! turmoil applies `partition`, `hold`, `repair` and latency to a whole host pair, and the
//! secondary's replication session and its forwarding connection both run from `secondary-1`
//! to the primary's cluster port. So no fault here reaches the forwarding connection alone.
//! turmoil's TCP does not retransmit, so a segment dropped by a partition, or held and then
//! dropped by `repair`, stalls its connection for good. A stalled replication session recovers
//! through its heartbeat timeout, and until then the secondary's wait for the write's WAL index
//! may time out with a warning. A stalled forwarding connection is closed by the forwarding
//! client's attempt timeout, which then sends the same request id on a new one.
//!
//! What stays meaningful despite the shared pair, and is checked: how often the primary ran
//! the request id (its `forwarded request` log lines), the KV v2 version numbers on the
//! primary, the response the client got, and that the primary and every secondary converge
//! to the same versions.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;
use serde_json::{Value, json};
use sim::set::{ReplicaSet, expect_ok, wait_converged};
use sim::trace::Trace;
use sim::{ApiClient, ApiResponse, Control, Harness, PRIMARY, SimConfig, seed_or};

const SECONDARY: &str = "secondary-1";

/// Long enough for the forward's 5 s deadline plus the secondary's 2 s wait for the WAL index,
/// so the client sees the secondary's own response rather than its own timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a scenario waits after starting a write before it acts on the held link. A fresh
/// TLS connection to the secondary and the forward take a few round trips of at most 20 ms.
const REQUEST_IN_FLIGHT: Duration = Duration::from_millis(300);

/// Builds a set with two secondaries, runs `scenario` as the client with the run's trace, and
/// returns its result.
fn run<F, Fut>(seed: u64, scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Control, Trace, ReplicaSet) -> Fut + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut harness = Harness::new(SimConfig::new(seed, 2))?;
    let control = harness.control();
    let trace = harness.trace().clone();
    harness.client("client", async move {
        let set = prepare(&control).await?;
        scenario(control, trace, set).await
    });
    let result = harness.run();
    if std::env::var_os("SIM_TRACE").is_some() {
        print_trace(harness.trace());
    }
    result
}

/// Prints every line of `trace`, for `SIM_TRACE=1`.
#[allow(clippy::print_stdout)]
fn print_trace(trace: &Trace) {
    for line in trace.lines() {
        println!("{line}");
    }
}

/// Establishes the set, mounts KV v2 at `kv/` and sends one write through the secondary, so
/// the forwarding connection is open before any fault.
async fn prepare(control: &Control) -> anyhow::Result<ReplicaSet> {
    let set = ReplicaSet::establish(control).await?;
    let primary = set.root_api(control, PRIMARY);
    let mounted = primary
        .post("sys/mounts/kv", &json!({"type": "kv-v2"}))
        .await?;
    expect_ok(&mounted, "mounting kv/")?;
    let configured = primary
        .post("kv/config", &json!({"max_versions": 100}))
        .await?;
    expect_ok(&configured, "configuring kv/")?;
    wait_converged(control, Duration::from_secs(10)).await?;
    let warm = secondary(&set, control)
        .post("kv/data/warm", &json!({"data": {"n": 0}}))
        .await?;
    expect_ok(&warm, "the first forwarded write")?;
    Ok(set)
}

/// Returns the secondary's root client with the long timeout.
fn secondary(set: &ReplicaSet, control: &Control) -> ApiClient {
    set.root_api(control, SECONDARY)
        .with_timeout(CLIENT_TIMEOUT)
}

/// Starts a KV v2 write of `data` to `kv/data/{key}` through the secondary.
fn start_write(
    api: &ApiClient,
    key: &str,
    data: Value,
) -> tokio::task::JoinHandle<anyhow::Result<ApiResponse>> {
    let api = api.clone();
    let path = format!("kv/data/{key}");
    tokio::task::spawn_local(async move { api.post(&path, &data).await })
}

/// Returns the request ids the primary logged for forwarded requests to `kv/data/{key}`, one
/// per execution, in order.
fn executions(trace: &Trace, key: &str) -> Vec<String> {
    let path = format!("path=kv/data/{key} ");
    trace
        .lines()
        .iter()
        .filter(|line| line.contains(" primary INFO ") && line.contains("forwarded request"))
        .filter(|line| line.contains(&path))
        .filter_map(|line| {
            let start = line.find("request_id=")? + "request_id=".len();
            let id = line[start..].split(' ').next()?;
            Some(id.to_owned())
        })
        .collect()
}

/// Returns the request ids of the attempts the secondary logged as failed.
fn failed_attempts(trace: &Trace) -> Vec<String> {
    trace
        .lines()
        .iter()
        .filter(|line| {
            line.contains(&format!(" {SECONDARY} WARN "))
                && line.contains("forwarding a request to the primary failed")
        })
        .filter_map(|line| {
            let start = line.find("request_id=")? + "request_id=".len();
            Some(line[start..].split(' ').next()?.to_owned())
        })
        .collect()
}

/// Returns `kv/metadata/{key}` on `api`'s node: the current version and the number of
/// versions.
async fn versions(api: &ApiClient, key: &str) -> anyhow::Result<(u64, usize)> {
    let read = api.get(&format!("kv/metadata/{key}")).await?;
    expect_ok(
        &read,
        &format!("reading kv/metadata/{key} on {}", api.host()),
    )?;
    let current = read.body["data"]["current_version"]
        .as_u64()
        .context("the metadata has no current_version")?;
    let count = read.body["data"]["versions"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    Ok((current, count))
}

/// Checks that `key` has exactly one version on the primary and on every secondary once they
/// converged.
async fn applied_once_everywhere(
    control: &Control,
    set: &ReplicaSet,
    key: &str,
) -> anyhow::Result<()> {
    wait_converged(control, Duration::from_secs(30)).await?;
    for host in [PRIMARY, "secondary-1", "secondary-2"] {
        let (current, count) = versions(&set.root_api(control, host), key).await?;
        assert_eq!(current, 1, "current version of kv/data/{key} on {host}");
        assert_eq!(count, 1, "number of versions of kv/data/{key} on {host}");
    }
    Ok(())
}

/// Returns the version a KV v2 write response names.
fn written_version(response: &ApiResponse) -> Option<u64> {
    response.body["data"]["version"].as_u64()
}

/// Message loss: the request is held on the link and then dropped, so it never reaches the
/// primary. The attempt times out, and the same request id goes out once more on a new
/// connection after the link is healed, within the forward's deadline.
#[test]
fn lost_request_is_retried_once() -> anyhow::Result<()> {
    run(seed_or(21), |control, trace, set| async move {
        let api = secondary(&set, &control);
        turmoil::hold(PRIMARY, SECONDARY);
        let write = start_write(&api, "lost-request", json!({"data": {"n": 1}}));
        tokio::time::sleep(REQUEST_IN_FLIGHT).await;
        assert!(
            executions(&trace, "lost-request").is_empty(),
            "the request passed the held link"
        );
        // Repairing without releasing drops what the link held.
        turmoil::repair(PRIMARY, SECONDARY);
        let written = write.await??;
        expect_ok(&written, "the write whose request was lost")?;
        assert_eq!(written_version(&written), Some(1), "{}", written.body);

        let ran = executions(&trace, "lost-request");
        assert_eq!(ran.len(), 1, "the primary ran the request {ran:?}");
        assert!(
            failed_attempts(&trace).contains(&ran[0]),
            "the secondary did not log the lost attempt of {}",
            ran[0]
        );
        applied_once_everywhere(&control, &set, "lost-request").await?;

        // The stalled connection is gone, so the next write goes through at once.
        let started = tokio::time::Instant::now();
        let next = api
            .post("kv/data/after-loss", &json!({"data": {"n": 2}}))
            .await?;
        expect_ok(&next, "the write after the lost request")?;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the next write took {:?}",
            started.elapsed()
        );
        Ok(())
    })
}

/// Duplication: the request reaches the primary, which commits it, but the response is lost
/// in a partition that starts right after the request left. The secondary's retry carries the
/// same request id, and the primary returns the recorded response instead of writing again.
#[test]
fn lost_response_returns_recorded_version() -> anyhow::Result<()> {
    run(seed_or(22), |control, trace, set| async move {
        let api = secondary(&set, &control);
        turmoil::hold(PRIMARY, SECONDARY);
        let write = start_write(&api, "lost-response", json!({"data": {"n": 1}}));
        tokio::time::sleep(REQUEST_IN_FLIGHT).await;
        // Releasing delivers what the link held, the request included; the partition then
        // drops everything sent after it, the response included.
        turmoil::release(PRIMARY, SECONDARY);
        turmoil::partition(PRIMARY, SECONDARY);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            executions(&trace, "lost-response").len(),
            1,
            "the held request did not reach the primary"
        );
        turmoil::repair(PRIMARY, SECONDARY);

        let written = write.await??;
        expect_ok(&written, "the write whose response was lost")?;
        assert_eq!(written_version(&written), Some(1), "{}", written.body);
        let ran = executions(&trace, "lost-response");
        assert_eq!(ran.len(), 2, "the primary ran {ran:?}");
        assert_eq!(ran[0], ran[1], "the retry carried another request id");
        applied_once_everywhere(&control, &set, "lost-response").await?;

        // The response's X-Vault-Index names the write, so a read that sends it back to the
        // secondary reads version 1 once replication has recovered.
        let index = written
            .index
            .clone()
            .context("the forwarded write returned no X-Vault-Index")?;
        let read = read_with_index(&api, "kv/data/lost-response", &index).await?;
        assert_eq!(read.body["data"]["metadata"]["version"], json!(1));
        assert_eq!(read.body["data"]["data"]["n"], json!(1));
        Ok(())
    })
}

/// Delay: the link delays the request for longer than an attempt may wait. The secondary closes
/// the connection and sends the same id on a new one. After the release the primary receives
/// the request twice, on the old connection and on the new one, and writes once.
#[test]
fn held_request_arrives_twice_applies_once() -> anyhow::Result<()> {
    run(seed_or(23), |control, trace, set| async move {
        let api = secondary(&set, &control);
        turmoil::hold(PRIMARY, SECONDARY);
        let write = start_write(&api, "held", json!({"data": {"n": 1}}));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            executions(&trace, "held").is_empty(),
            "the request passed the held link"
        );
        turmoil::release(PRIMARY, SECONDARY);

        let written = write.await??;
        expect_ok(&written, "the held write")?;
        assert_eq!(written_version(&written), Some(1), "{}", written.body);
        let ran = executions(&trace, "held");
        assert_eq!(ran.len(), 2, "the primary ran {ran:?}");
        assert_eq!(ran[0], ran[1], "the retry carried another request id");
        applied_once_everywhere(&control, &set, "held").await
    })
}

/// A write whose every attempt fails gets 503 and is unknown to the client: here the primary
/// committed it before the partition dropped the response. It stays applied once, and no late
/// delivery applies it again.
#[test]
fn unconfirmed_write_applies_at_most_once() -> anyhow::Result<()> {
    run(seed_or(24), |control, trace, set| async move {
        let api = secondary(&set, &control);
        turmoil::hold(PRIMARY, SECONDARY);
        let write = start_write(&api, "unconfirmed", json!({"data": {"n": 1}}));
        tokio::time::sleep(REQUEST_IN_FLIGHT).await;
        turmoil::release(PRIMARY, SECONDARY);
        turmoil::partition(PRIMARY, SECONDARY);

        let written = write.await??;
        assert_eq!(written.status, 503, "{}", written.body);
        assert!(
            written.errors().contains("not confirmed"),
            "{}",
            written.errors()
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        turmoil::repair(PRIMARY, SECONDARY);

        let ran = executions(&trace, "unconfirmed");
        assert_eq!(ran.len(), 1, "the primary ran {ran:?}");
        applied_once_everywhere(&control, &set, "unconfirmed").await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (current, _) = versions(&set.root_api(&control, PRIMARY), "unconfirmed").await?;
        assert_eq!(
            current, 1,
            "a late delivery wrote kv/data/unconfirmed again"
        );

        // The client learns the outcome by reading, and its next check-and-set write builds
        // on version 1.
        let next = api
            .post(
                "kv/data/unconfirmed",
                &json!({"options": {"cas": 1}, "data": {"n": 2}}),
            )
            .await?;
        expect_ok(&next, "the check-and-set write after the 503")?;
        assert_eq!(written_version(&next), Some(2), "{}", next.body);
        Ok(())
    })
}

/// The link fault applied around one counter step.
#[derive(Clone, Copy, Debug)]
enum StepFault {
    None,
    /// The request is held and then dropped.
    LoseRequest,
    /// The request arrives, and the response is dropped for `heal_after`.
    LoseResponse {
        heal_after: Duration,
    },
    /// Everything is held for `release_after`, then delivered.
    Hold {
        release_after: Duration,
    },
    /// Every message takes up to `max` to arrive during the step.
    Latency {
        max: Duration,
    },
}

/// One write of the counter and what the client learned of it.
#[derive(Clone, Debug)]
struct Attempt {
    /// The value written: unique to the attempt.
    tag: String,
    /// The version the client expected to replace (`options.cas`).
    cas: u64,
    /// The version the secondary returned, when it acknowledged the write.
    acknowledged: Option<u64>,
}

/// A counter of check-and-set writes through the secondary, with a link fault drawn from the
/// seed around each step. The history has no gap and no duplicate: each version contains one
/// attempt, no attempt is in two versions, every acknowledged attempt is at the version it
/// was acknowledged with, and the primary and both secondaries contain the same history. A step
/// on a healthy link is acknowledged, whatever the steps before it left behind.
#[test]
fn counter_under_link_faults_has_no_gaps() -> anyhow::Result<()> {
    run(seed_or(25), |control, trace, set| async move {
        let api = secondary(&set, &control);
        let primary = set.root_api(&control, PRIMARY);
        let mut rng = control.rng(3);
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut believed = 0;
        for step in 0..12 {
            let fault = match rng.gen_range(0..5) {
                0 => StepFault::None,
                1 => StepFault::LoseRequest,
                2 => StepFault::LoseResponse {
                    heal_after: Duration::from_millis(rng.gen_range(100..6000)),
                },
                3 => StepFault::Hold {
                    release_after: Duration::from_millis(rng.gen_range(100..6000)),
                },
                _ => StepFault::Latency {
                    max: Duration::from_millis(rng.gen_range(50..2500)),
                },
            };
            tracing::info!(target: "sim::forwarding", step, ?fault, "counter step");
            let tag = format!("step-{step}");
            let data = json!({"options": {"cas": believed}, "data": {"tag": tag}});
            let result = write_with_fault(&control, &api, data, fault).await;
            let acknowledged = match &result {
                Ok(response) if (200..300).contains(&response.status) => {
                    let version = written_version(response)
                        .context("an acknowledged write named no version")?;
                    assert_eq!(version, believed + 1, "step {step} skipped a version");
                    Some(version)
                }
                _ => None,
            };
            if matches!(fault, StepFault::None) {
                assert!(
                    acknowledged.is_some(),
                    "step {step} failed on a healthy link: {result:?}"
                );
            }
            attempts.push(Attempt {
                tag,
                cas: believed,
                acknowledged,
            });
            // An unknown outcome is settled by reading the primary, as a client would.
            believed = match acknowledged {
                Some(version) => version,
                None => settle(&primary).await?,
            };
        }
        wait_converged(&control, Duration::from_secs(60)).await?;
        let history = history_of(&primary).await?;
        check_history(&history, &attempts)?;
        for host in ["secondary-1", "secondary-2"] {
            let copy = history_of(&set.root_api(&control, host)).await?;
            assert_eq!(copy, history, "the counter's history on {host}");
        }
        // The secondary keeps one request id for all attempts of one client write.
        let ran = executions(&trace, "counter");
        let ids: std::collections::BTreeSet<&String> = ran.iter().collect();
        assert!(
            ids.len() <= attempts.len(),
            "{} request ids for {} client writes: {ran:?}",
            ids.len(),
            attempts.len()
        );
        Ok(())
    })
}

/// Sends one counter write through the secondary with `fault` around it, and heals the link.
async fn write_with_fault(
    control: &Control,
    api: &ApiClient,
    data: Value,
    fault: StepFault,
) -> anyhow::Result<ApiResponse> {
    let result = match fault {
        StepFault::None => api.post("kv/data/counter", &data).await,
        StepFault::LoseRequest => {
            turmoil::hold(PRIMARY, SECONDARY);
            let write = start_write(api, "counter", data);
            tokio::time::sleep(REQUEST_IN_FLIGHT).await;
            turmoil::repair(PRIMARY, SECONDARY);
            write.await?
        }
        StepFault::LoseResponse { heal_after } => {
            turmoil::hold(PRIMARY, SECONDARY);
            let write = start_write(api, "counter", data);
            tokio::time::sleep(REQUEST_IN_FLIGHT).await;
            turmoil::release(PRIMARY, SECONDARY);
            turmoil::partition(PRIMARY, SECONDARY);
            tokio::time::sleep(heal_after).await;
            turmoil::repair(PRIMARY, SECONDARY);
            write.await?
        }
        StepFault::Hold { release_after } => {
            turmoil::hold(PRIMARY, SECONDARY);
            let write = start_write(api, "counter", data);
            tokio::time::sleep(release_after).await;
            turmoil::release(PRIMARY, SECONDARY);
            write.await?
        }
        StepFault::Latency { max } => {
            control.set_latency(PRIMARY, SECONDARY, max).await;
            let result = api.post("kv/data/counter", &data).await;
            control
                .set_latency(PRIMARY, SECONDARY, sim::harness::DEFAULT_MAX_LATENCY)
                .await;
            result
        }
    };
    // A held request may still be in flight on a closed connection; give it time to land
    // before the client settles the outcome.
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
}

/// Returns the counter's current version on the primary, 0 before the first write.
async fn settle(primary: &ApiClient) -> anyhow::Result<u64> {
    let read = primary.get("kv/metadata/counter").await?;
    match read.status {
        404 => Ok(0),
        _ => {
            expect_ok(&read, "reading the counter's metadata")?;
            read.body["data"]["current_version"]
                .as_u64()
                .context("the counter's metadata has no current_version")
        }
    }
}

/// Returns every version of the counter on `api`'s node, in order, as its tag.
async fn history_of(api: &ApiClient) -> anyhow::Result<Vec<String>> {
    let current = match api.get("kv/metadata/counter").await? {
        read if read.status == 404 => return Ok(Vec::new()),
        read => {
            expect_ok(
                &read,
                &format!("reading the counter's metadata on {}", api.host()),
            )?;
            read.body["data"]["current_version"].as_u64().unwrap_or(0)
        }
    };
    let mut tags = Vec::new();
    for version in 1..=current {
        let read = api
            .get(&format!("kv/data/counter?version={version}"))
            .await?;
        expect_ok(
            &read,
            &format!("reading counter version {version} on {}", api.host()),
        )?;
        let tag = read.body["data"]["data"]["tag"]
            .as_str()
            .with_context(|| format!("counter version {version} has no tag"))?;
        tags.push(tag.to_owned());
    }
    Ok(tags)
}

/// Checks the counter's history against what the client sent and learned.
fn check_history(history: &[String], attempts: &[Attempt]) -> anyhow::Result<()> {
    for (position, tag) in history.iter().enumerate() {
        let version = position as u64 + 1;
        let Some(attempt) = attempts.iter().find(|attempt| attempt.tag == *tag) else {
            bail!("counter version {version} holds {tag}, which no attempt wrote");
        };
        assert_eq!(
            attempt.cas + 1,
            version,
            "{tag} was written over version {} but is version {version}",
            attempt.cas
        );
        let copies = history.iter().filter(|other| *other == tag).count();
        assert_eq!(copies, 1, "{tag} is in {copies} versions");
    }
    for attempt in attempts {
        if let Some(version) = attempt.acknowledged {
            let stored = history.get(version as usize - 1);
            assert_eq!(
                stored,
                Some(&attempt.tag),
                "{} was acknowledged as version {version}",
                attempt.tag
            );
        }
    }
    Ok(())
}

/// Reads `path` on the secondary with `index`, retrying while the secondary returns 412
/// because replication has not delivered that state yet.
async fn read_with_index(api: &ApiClient, path: &str, index: &str) -> anyhow::Result<ApiResponse> {
    let api = api.with_index(index);
    for _ in 0..20 {
        let read = api.get(path).await?;
        if read.status != 412 {
            expect_ok(&read, &format!("reading {path} with X-Vault-Index"))?;
            return Ok(read);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("{path} on {} stayed behind X-Vault-Index", api.host())
}
