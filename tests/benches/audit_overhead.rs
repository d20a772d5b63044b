//! The cost of the file audit device per request, between a real client and a real server.
//!
//! Starts one server, sends 2,000 `auth/token/lookup-self` requests with no audit device and
//! 2,000 more with a file device enabled (two JSON lines written per request), and prints the
//! median, p90 and p99 latency of each run. Run it with
//! `cargo bench -p coffer-tests --bench audit_overhead`; it uses whichever `coffer` binary the
//! tests use (see `COFFER_BIN`).

use std::time::{Duration, Instant};

use coffer_tests::{Api, Server};
use serde_json::json;

const REQUESTS: usize = 2000;

fn measure(api: &Api) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        api.get("auth/token/lookup-self")?.expect_status(200)?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

#[allow(clippy::print_stdout)]
fn report(name: &str, latencies: &[Duration]) {
    let at = |fraction: f64| {
        let index = ((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1);
        latencies[index].as_secs_f64() * 1e3
    };
    println!(
        "{name:<18} median {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms",
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    let directory = tempfile::tempdir()?;
    let file = directory.path().join("audit.log");

    let without = measure(&api)?;
    let body = json!({"type": "file", "options": {"file_path": file.to_string_lossy()}});
    api.post("sys/audit/file", &body)?.expect_status(204)?;
    let with = measure(&api)?;

    println!("auth/token/lookup-self over {REQUESTS} sequential requests each:");
    report("no audit device", &without);
    report("file audit device", &with);
    Ok(())
}
