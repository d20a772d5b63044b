//! Latency of a write forwarded by a secondary, next to the same write sent to the primary.
//!
//! Starts a primary and one secondary as real processes, then writes 300 KV v2 versions of one
//! secret on the primary and 300 through the secondary, one at a time. A forwarded write's
//! time covers the forward over the cluster port, the primary's commit and the secondary's wait
//! until it has applied that write, so the difference between the two is the cost of
//! forwarding with read-your-writes. Prints the median, p90, p99 and maximum of each.

use std::time::{Duration, Instant};

use coffer_tests::Api;
use coffer_tests::cluster::ReplicaSet;
use serde_json::json;

const WRITES: usize = 300;

fn measure(api: &Api, path: &str) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(WRITES);
    for number in 0..WRITES {
        let started = Instant::now();
        api.post(path, &json!({"data": {"number": number}}))?
            .expect_status(200)?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

#[allow(clippy::print_stdout)]
fn report(label: &str, times: &[Duration]) {
    let at = |fraction: f64| times[((times.len() as f64 * fraction) as usize).min(times.len() - 1)];
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!(
        "{label:<28} median {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
}

#[allow(clippy::print_stdout)]
fn main() -> anyhow::Result<()> {
    let set = ReplicaSet::start(1)?;
    let primary = set.primary.api(set.root())?;
    primary.enable_kv("secret", "2")?;
    set.wait_converged()?;
    let secondary = &set.secondaries[0];
    let forwarding = secondary.server.api(&secondary.root_token)?;

    let direct = measure(&primary, "secret/data/direct")?;
    let forwarded = measure(&forwarding, "secret/data/forwarded")?;
    println!("{WRITES} sequential KV v2 writes each:");
    report("on the primary", &direct);
    report("forwarded by the secondary", &forwarded);
    Ok(())
}
