//! The oracle of client writes: what the client was told about each write, and what that
//! allows the replica set to hold afterwards.
//!
//! Every write goes to its own key with its own value, so each key has one expected value. A
//! write the primary acknowledged (2xx) must be there after any crash. A write that failed or
//! timed out is unknown: the primary may have committed it before the failure, so it may be
//! there or absent, but never with another value.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use crate::client::ApiClient;

/// What the client learned about one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The primary answered 2xx.
    Acknowledged,
    /// The request failed, timed out or got another status; it may or may not have committed.
    Unknown,
}

/// The writes of a run, by key, in key order.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    writes: BTreeMap<String, (String, Outcome)>,
}

impl Oracle {
    /// Records the write of `value` to `key` and what the client learned.
    pub fn record(&mut self, key: &str, value: &str, outcome: Outcome) {
        self.writes
            .insert(key.to_owned(), (value.to_owned(), outcome));
    }

    /// Returns the number of acknowledged writes.
    pub fn acknowledged(&self) -> usize {
        self.writes
            .values()
            .filter(|(_, outcome)| *outcome == Outcome::Acknowledged)
            .count()
    }

    /// Returns every written value, to look for in storage and logs.
    pub fn values(&self) -> Vec<String> {
        self.writes
            .values()
            .map(|(value, _)| value.clone())
            .collect()
    }

    /// Reads every written key through `api` and fails on the first one that breaks the
    /// oracle: an acknowledged write missing, or any key holding a value never written.
    pub async fn check(&self, api: &ApiClient) -> anyhow::Result<()> {
        for (key, (value, outcome)) in &self.writes {
            let read = api.get(key).await?;
            let found = match read.status {
                200 => read.body["data"]["v"].as_str().map(str::to_owned),
                404 => None,
                status => bail!(
                    "reading {key} on {} failed with {status}: {}",
                    api.host(),
                    read.errors()
                ),
            };
            match (found, outcome) {
                (Some(found), _) if found == *value => {}
                (Some(found), _) => bail!(
                    "{key} on {} holds {found:?}, a value never written to it (wrote {value:?})",
                    api.host()
                ),
                (None, Outcome::Acknowledged) => bail!(
                    "the acknowledged write of {key} is missing on {}",
                    api.host()
                ),
                (None, Outcome::Unknown) => {}
            }
        }
        Ok(())
    }
}

/// Returns the outcome of a write from the client's result.
pub fn outcome_of(result: &anyhow::Result<crate::client::ApiResponse>) -> Outcome {
    match result {
        Ok(response) if (200..300).contains(&response.status) => Outcome::Acknowledged,
        _ => Outcome::Unknown,
    }
}

/// Returns `value` as the JSON body of a write.
pub fn body_of(value: &str) -> Value {
    serde_json::json!({ "v": value })
}
