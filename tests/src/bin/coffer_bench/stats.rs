//! Latency samples and the table the bench prints.

use std::time::Duration;

/// The latencies of one load and the wall time it took.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    /// Sorts `latencies`, which were measured over `elapsed`.
    pub(crate) fn new(mut latencies: Vec<Duration>, elapsed: Duration) -> Sample {
        latencies.sort_unstable();
        Sample { latencies, elapsed }
    }

    /// Returns the number of completed operations.
    pub(crate) fn count(&self) -> usize {
        self.latencies.len()
    }

    /// Returns completed operations per second of wall time.
    pub(crate) fn ops_per_second(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Returns the latency below which `fraction` of the operations finished, zero when empty.
    pub(crate) fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = (self.latencies.len() as f64 * fraction) as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }
}

/// One line of the printed table.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    /// What was measured.
    pub(crate) operation: String,
    /// Requests in flight, or `-` when the row is not a load.
    pub(crate) concurrency: String,
    /// Operations per second, when the row has a rate.
    pub(crate) rate: Option<f64>,
    /// Median and 99th percentile latency, when the row has latencies.
    pub(crate) latency: Option<(Duration, Duration)>,
    /// The comparison with the reference, or the row's other figures.
    pub(crate) versus: String,
}

impl Row {
    /// Makes a row from a load's sample.
    pub(crate) fn load(
        operation: &str,
        concurrency: usize,
        sample: &Sample,
        versus: String,
    ) -> Row {
        Row {
            operation: operation.to_owned(),
            concurrency: concurrency.to_string(),
            rate: Some(sample.ops_per_second()),
            latency: Some((sample.percentile(0.5), sample.percentile(0.99))),
            versus,
        }
    }

    /// Makes a row with only a description in the last column.
    pub(crate) fn note(operation: &str, versus: String) -> Row {
        Row {
            operation: operation.to_owned(),
            concurrency: "-".to_owned(),
            rate: None,
            latency: None,
            versus,
        }
    }
}

/// Returns `ours / reference` as text such as `0.52x HTTP limit`.
pub(crate) fn ratio(ours: f64, reference: f64, name: &str) -> String {
    if reference <= 0.0 {
        return format!("- ({name} not measured)");
    }
    format!("{:.2}x {name}", ours / reference)
}

/// Formats a duration in milliseconds with three decimals.
pub(crate) fn millis(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1e3)
}

/// Renders `rows` as a Markdown table, which reads as plain text too.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut text = String::from(
        "| operation | concurrency | ops/s | p50 | p99 | versus reference |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in rows {
        let rate = row
            .rate
            .map(|rate| format!("{rate:.0}"))
            .unwrap_or_else(|| "-".to_owned());
        let (p50, p99) = match row.latency {
            Some((p50, p99)) => (millis(p50), millis(p99)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        text.push_str(&format!(
            "| {} | {} | {rate} | {p50} | {p99} | {} |\n",
            row.operation, row.concurrency, row.versus
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_picks_rank() {
        let latencies = (1..=100).map(Duration::from_millis).collect();
        let sample = Sample::new(latencies, Duration::from_secs(2));
        assert_eq!(sample.percentile(0.5), Duration::from_millis(51));
        assert_eq!(sample.percentile(0.99), Duration::from_millis(100));
        assert_eq!(sample.ops_per_second(), 50.0);
    }

    #[test]
    fn percentile_of_empty_sample_is_zero() {
        let sample = Sample::new(Vec::new(), Duration::from_secs(1));
        assert_eq!(sample.percentile(0.99), Duration::ZERO);
    }

    #[test]
    fn ratio_without_reference_says_so() {
        assert_eq!(ratio(10.0, 0.0, "etcd"), "- (etcd not measured)");
        assert_eq!(ratio(10.0, 20.0, "etcd"), "0.50x etcd");
    }
}
