//! Replication delay between real processes: the time from a write's acknowledgement on the
//! primary to the moment the same value is readable on a secondary.
//!
//! Starts a primary and one secondary (release binaries are not required, but the figures in
//! docs/benchmarks.md come from `cargo bench -p coffer-tests --bench replication_delay`), writes
//! 1,000 KV v2 secrets one at a time, and after each acknowledgement polls the secondary until
//! it returns the new version. The delay includes one HTTP read on the secondary, so it is an
//! upper bound of the replication delay itself. Prints the median, p90, p99 and maximum.

use std::time::{Duration, Instant};

use coffer_tests::cluster::ReplicaSet;
use serde_json::json;

const WRITES: usize = 1000;

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let reader = secondary.server.api(&secondary.root_token)?;

    let mut delays = Vec::with_capacity(WRITES);
    for number in 0..WRITES {
        let marker = format!("delay-{number}");
        primary
            .post("secret/data/delay", &json!({"data": {"marker": marker}}))?
            .expect_status(200)?;
        let acknowledged = Instant::now();
        loop {
            let response = reader.get("secret/data/delay")?;
            if response.body["data"]["data"]["marker"] == marker.as_str() {
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("write {number} did not reach the secondary within 30 s");
            }
        }
        delays.push(acknowledged.elapsed());
    }
    delays.sort();
    let at =
        |fraction: f64| delays[((delays.len() as f64 * fraction) as usize).min(delays.len() - 1)];
    println!(
        "replication delay over {WRITES} writes (acknowledged on the primary to readable on the secondary):"
    );
    println!("  median {:>9.3} ms", at(0.5).as_secs_f64() * 1e3);
    println!("  p90    {:>9.3} ms", at(0.9).as_secs_f64() * 1e3);
    println!("  p99    {:>9.3} ms", at(0.99).as_secs_f64() * 1e3);
    println!(
        "  max    {:>9.3} ms",
        delays[delays.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
