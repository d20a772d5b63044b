//! Randomized runs: a fault schedule and a workload drawn from each seed, then the invariants.
//!
//! `SIM_SEEDS=N` runs seeds 1 to N (3 by default); `SIM_SEED=S` runs seed S alone.

use sim::random::run_seed;

#[test]
fn random_faults_keep_invariants() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("SIM_SEED must be an unsigned integer")],
        Err(_) => {
            let count = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|count| count.parse().ok())
                .unwrap_or(3);
            (1..=count).collect()
        }
    };
    let mut failures = Vec::new();
    for seed in seeds {
        match run_seed(seed, 2) {
            Ok(report) => println!(
                "seed {seed}: {} faults, {} acknowledged writes and deletes, {} trace lines, trace {}",
                report.faults,
                report.acknowledged,
                report.trace_lines,
                &report.trace_hash[..16]
            ),
            Err(error) => {
                println!("seed {seed} FAILED: {error:#}");
                failures.push(seed);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seeds {failures:?} failed; replay one with: SIM_SEED=<seed> cargo test -p sim --test randomized"
    );
}
