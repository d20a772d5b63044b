//! The oracle of client writes: the response the client received for each write, and the
//! state that allows the replica set to contain afterwards.
//!
//! Every write goes to its own key with its own value, so each key has one expected value. A
//! write the primary acknowledged (2xx) must be there after any crash. A write that failed or
//! timed out is unknown: the primary may have committed it before the failure, so it may be
//! there or absent, but never with another value.

use std::collections::BTreeMap;

use anyhow::bail;
use serde_json::Value;

use crate::client::ApiClient;

/// The result of one write as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The primary returned 2xx.
    Acknowledged,
    /// The request failed, timed out or got another status; it may or may not have committed.
    Unknown,
}

/// The history of one key: the value written and the write's outcome, then the delete's
/// outcome if the key was deleted.
#[derive(Clone, Debug)]
struct KeyHistory {
    value: String,
    written: Outcome,
    deleted: Option<Outcome>,
}

/// The writes of a run, by key, in key order.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    writes: BTreeMap<String, KeyHistory>,
}

impl Oracle {
    /// Records the write of `value` to `key` and what the client learned.
    pub fn record(&mut self, key: &str, value: &str, outcome: Outcome) {
        let history = KeyHistory {
            value: value.to_owned(),
            written: outcome,
            deleted: None,
        };
        self.writes.insert(key.to_owned(), history);
    }

    /// Records the delete of `key`, written before, and what the client learned.
    pub fn record_delete(&mut self, key: &str, outcome: Outcome) {
        if let Some(history) = self.writes.get_mut(key) {
            history.deleted = Some(outcome);
        }
    }

    /// Returns the number of acknowledged writes and deletes.
    pub fn acknowledged(&self) -> usize {
        self.writes
            .values()
            .map(|history| {
                usize::from(history.written == Outcome::Acknowledged)
                    + usize::from(history.deleted == Some(Outcome::Acknowledged))
            })
            .sum()
    }

    /// Returns every written value, to look for in storage and logs.
    pub fn values(&self) -> Vec<String> {
        self.writes
            .values()
            .map(|history| history.value.clone())
            .collect()
    }

    /// Reads every written key through `api` and fails on the first one that breaks the
    /// oracle: an acknowledged write missing, a key whose delete was acknowledged still there,
    /// or any key holding a value never written.
    pub async fn check(&self, api: &ApiClient) -> anyhow::Result<()> {
        for (key, history) in &self.writes {
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
            if let Some(found) = &found {
                if *found != history.value {
                    bail!(
                        "{key} on {} contains {found:?}, a value never written to it (wrote {:?})",
                        api.host(),
                        history.value
                    );
                }
            }
            match (found.is_some(), &history.written, &history.deleted) {
                (true, _, Some(Outcome::Acknowledged)) => {
                    bail!(
                        "{key} is still on {} after an acknowledged delete",
                        api.host()
                    )
                }
                (false, Outcome::Acknowledged, None) => bail!(
                    "the acknowledged write of {key} is missing on {}",
                    api.host()
                ),
                _ => {}
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
