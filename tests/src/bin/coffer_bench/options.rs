//! Command-line options and the sizes of each workload.

use std::time::Duration;

use anyhow::{Context, bail};

/// The help text.
pub(crate) const USAGE: &str = "\
usage: coffer-bench [--quick] [--seconds N] [--wal-writes N] [--merkle-keys N]
                    [--merkle-only | --no-merkle]

  --quick          small sizes: 2 s per load, 10,000 writes behind for WAL catch-up and
                   20,000 keys for Merkle catch-up (finishes in under two minutes)
  --seconds N      time limit of each load, in seconds (default 10, 2 with --quick)
  --wal-writes N   writes a stopped secondary misses before WAL catch-up (default 100,000)
  --merkle-keys N  keys loaded before Merkle catch-up, of which 1% change (default 1,000,000)
  --merkle-only    run only the Merkle catch-up, which takes most of a full run's time
  --no-merkle      run everything but the Merkle catch-up

Set COFFER_BIN to the server binary to measure, such as target/release/coffer.";

/// What the bench runs and how long.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Time limit of each load.
    pub(crate) load_time: Duration,
    /// Request limit of each load, so a fast load also stops.
    pub(crate) load_requests: u64,
    /// Writes the primary takes while its secondary is stopped, before WAL catch-up.
    pub(crate) wal_writes: u64,
    /// Keys on both sides before Merkle catch-up.
    pub(crate) merkle_keys: u64,
    /// Worker threads of the client's runtime.
    pub(crate) client_threads: usize,
    /// Which parts run.
    pub(crate) parts: Parts,
}

/// The parts of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parts {
    /// Every workload.
    All,
    /// Only the Merkle catch-up.
    MerkleOnly,
    /// Every workload except the Merkle catch-up.
    NoMerkle,
}

impl Parts {
    /// Returns whether the workloads of the first replica set run.
    pub(crate) fn main_workloads(self) -> bool {
        self != Parts::MerkleOnly
    }

    /// Returns whether the Merkle catch-up runs.
    pub(crate) fn merkle(self) -> bool {
        self != Parts::NoMerkle
    }
}

impl Options {
    /// Parses the arguments after the program name; `None` means help was requested.
    pub(crate) fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Option<Options>> {
        let args: Vec<String> = args.collect();
        let quick = args.iter().any(|arg| arg == "--quick");
        let mut options = if quick {
            Options {
                load_time: Duration::from_secs(2),
                load_requests: 200_000,
                wal_writes: 10_000,
                merkle_keys: 20_000,
                client_threads: 2,
                parts: Parts::All,
            }
        } else {
            Options {
                load_time: Duration::from_secs(10),
                load_requests: 1_000_000,
                wal_writes: 100_000,
                merkle_keys: 1_000_000,
                client_threads: 2,
                parts: Parts::All,
            }
        };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            match arg.as_str() {
                "--quick" => {}
                "--help" | "-h" => return Ok(None),
                "--seconds" => {
                    let seconds = number(arg, rest.next())?;
                    options.load_time = Duration::from_secs(seconds);
                }
                "--wal-writes" => options.wal_writes = number(arg, rest.next())?,
                "--merkle-keys" => options.merkle_keys = number(arg, rest.next())?,
                "--merkle-only" | "--no-merkle" if options.parts != Parts::All => {
                    bail!("--merkle-only and --no-merkle exclude each other; pass one of them")
                }
                "--merkle-only" => options.parts = Parts::MerkleOnly,
                "--no-merkle" => options.parts = Parts::NoMerkle,
                other => bail!("unknown argument {other:?}; run coffer-bench --help for usage"),
            }
        }
        // 1% must change in more than the 16 WAL entries the Merkle primary keeps.
        if options.merkle_keys < 10_000 {
            bail!(
                "--merkle-keys {} is too small: 1% of it must be at least 100 keys, so that the \
                 changes cannot travel by WAL",
                options.merkle_keys
            );
        }
        Ok(Some(options))
    }

    /// Describes the sizes for the output's first line.
    pub(crate) fn describe(&self) -> String {
        let merkle = if self.parts.merkle() {
            format!("{} keys for Merkle catch-up", self.merkle_keys)
        } else {
            "no Merkle catch-up".to_owned()
        };
        format!(
            "{} s per load, {} writes behind for WAL catch-up, {merkle}",
            self.load_time.as_secs(),
            self.wal_writes,
        )
    }
}

fn number(flag: &str, value: Option<&String>) -> anyhow::Result<u64> {
    let value = value.with_context(|| format!("{flag} needs a number"))?;
    let parsed: u64 = value
        .parse()
        .with_context(|| format!("{flag} {value:?} is not a whole number"))?;
    if parsed == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Options>> {
        Options::parse(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn quick_uses_small_sizes() -> anyhow::Result<()> {
        let options = parse(&["--quick"])?.expect("not help");
        assert_eq!(options.merkle_keys, 20_000);
        assert_eq!(options.wal_writes, 10_000);
        assert_eq!(options.load_time, Duration::from_secs(2));
        Ok(())
    }

    #[test]
    fn sizes_override_defaults() -> anyhow::Result<()> {
        let options = parse(&["--merkle-keys", "50000", "--seconds", "3"])?.expect("not help");
        assert_eq!(options.merkle_keys, 50_000);
        assert_eq!(options.load_time, Duration::from_secs(3));
        assert_eq!(options.wal_writes, 100_000);
        Ok(())
    }

    #[test]
    fn bad_arguments_are_rejected() {
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--seconds", "x"]).is_err());
        assert!(parse(&["--seconds", "0"]).is_err());
        assert!(parse(&["--merkle-keys", "9999"]).is_err());
        assert!(parse(&["--fast"]).is_err());
        assert!(parse(&["--merkle-only", "--no-merkle"]).is_err());
    }

    #[test]
    fn parts_select_workloads() -> anyhow::Result<()> {
        let merkle_only = parse(&["--merkle-only"])?.expect("not help").parts;
        assert!(!merkle_only.main_workloads());
        assert!(merkle_only.merkle());
        let no_merkle = parse(&["--no-merkle"])?.expect("not help").parts;
        assert!(no_merkle.main_workloads());
        assert!(!no_merkle.merkle());
        Ok(())
    }

    #[test]
    fn help_returns_none() -> anyhow::Result<()> {
        assert!(parse(&["--help"])?.is_none());
        Ok(())
    }
}
