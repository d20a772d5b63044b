//! `coffer-bench`: throughput and latency of real `coffer server` processes, each figure next to
//! a reference measured in the same run on the same machine.
//!
//! The bench starts a primary and a secondary on 127.0.0.1 (LMDB in temporary directories)
//! through the replica-set harness, drives them with its own hyper client over keep-alive
//! connections, and prints one Markdown table. Every load stops after a request count or a
//! time limit, whichever comes first, and every server it starts is stopped at the end.
//!
//! ```sh
//! cargo build --release -p coffer-io --bin coffer
//! COFFER_BIN=target/release/coffer cargo run --release -p coffer-tests --bin coffer-bench -- --quick
//! ```

// The bench is a command-line program whose output is the table it prints.
#![allow(clippy::print_stdout)]

mod catch_up;
mod client;
mod options;
mod reference;
mod stats;
mod workloads;

use std::time::Instant;

use crate::options::Options;
use crate::stats::render;

fn main() -> anyhow::Result<()> {
    let options = match Options::parse(std::env::args().skip(1))? {
        Some(options) => options,
        None => {
            println!("{}", options::USAGE);
            return Ok(());
        }
    };
    let started = Instant::now();
    println!("coffer-bench: {}", options.describe());
    println!("load before the run: {}", load_average());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    if options.parts.main_workloads() {
        rows.extend(workloads::run(&runtime, &options)?);
    }
    if options.parts.merkle() {
        rows.extend(catch_up::run_merkle(&runtime, &options)?);
    }

    println!();
    println!("{}", render(&rows));
    println!("load after the run: {}", load_average());
    println!("total time: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Returns the 1, 5 and 15 minute load averages from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|error| format!("unknown ({error})"))
}

/// Returns the peak resident set size (`VmHWM`) of process `pid`, such as `84.2 MiB`.
pub(crate) fn peak_rss(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "unknown (the process is not running)".to_owned();
    };
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status,
        Err(error) => return format!("unknown ({error})"),
    };
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        });
    match kib {
        Some(kib) => format!("{:.1} MiB", kib as f64 / 1024.0),
        None => "unknown (no VmHWM line)".to_owned(),
    }
}
