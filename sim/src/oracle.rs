//! The oracle of client writes: the response the client received for each write, and the
//! state that allows the replica set to contain afterwards.
//!
//! Every write goes to its own key with its own value, so each key has one expected value. A
//! write the primary acknowledged (2xx) must be there after any crash. A write that failed or
//! timed out is unknown: the primary may have committed it before the failure, so it may be
//! there or absent, but never with another value. A forced promotion discards what an old
//! primary acknowledged past the fork point. Such a write must be absent, and such a delete is
//! undone unless another delete of the key remains.

use std::collections::BTreeMap;

use anyhow::bail;
use coffer_core::forwarding::parse_index;
use serde_json::Value;

use crate::client::ApiClient;

/// The result of one write as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `host` returned 2xx, with the write's WAL index from its `X-Vault-Index` when it sent one.
    Acknowledged {
        /// The primary that acknowledged the write.
        host: String,
        /// The WAL index the response names.
        index: Option<u64>,
    },
    /// The request failed, timed out or got another status; it may or may not have committed.
    Unknown,
    /// The primary acknowledged it, but a promotion left it out of the new primary's history,
    /// so no node may apply it.
    Discarded,
}

impl Outcome {
    fn is_acknowledged(&self) -> bool {
        matches!(self, Outcome::Acknowledged { .. })
    }

    /// Turns an acknowledgement by `host` past WAL index `fork` into [`Outcome::Discarded`],
    /// and one by `host` without an index into [`Outcome::Unknown`]. Returns whether it
    /// discarded it.
    fn discard_after(&mut self, host: &str, fork: u64) -> bool {
        let Outcome::Acknowledged { host: by, index } = self else {
            return false;
        };
        if by != host {
            return false;
        }
        match *index {
            Some(index) if index > fork => {
                *self = Outcome::Discarded;
                true
            }
            Some(_) => false,
            None => {
                *self = Outcome::Unknown;
                false
            }
        }
    }
}

/// The history of one key: the value written and the write's outcome, then the outcome of
/// each delete of the key.
#[derive(Clone, Debug)]
struct KeyHistory {
    value: String,
    written: Outcome,
    deletes: Vec<Outcome>,
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
            deletes: Vec::new(),
        };
        self.writes.insert(key.to_owned(), history);
    }

    /// Records the delete of `key`, written before, and what the client learned.
    pub fn record_delete(&mut self, key: &str, outcome: Outcome) {
        if let Some(history) = self.writes.get_mut(key) {
            history.deletes.push(outcome);
        }
    }

    /// Returns the number of acknowledged writes and deletes.
    pub fn acknowledged(&self) -> usize {
        self.writes
            .values()
            .map(|history| {
                let deletes = history.deletes.iter();
                usize::from(history.written.is_acknowledged())
                    + deletes.filter(|delete| delete.is_acknowledged()).count()
            })
            .sum()
    }

    /// Marks as discarded every write and delete that `host` acknowledged past WAL index
    /// `fork`, where a forced promotion started the new primary's history. Returns how many.
    pub fn discard_after(&mut self, host: &str, fork: u64) -> usize {
        let mut discarded = 0;
        for history in self.writes.values_mut() {
            discarded += usize::from(history.written.discard_after(host, fork));
            for delete in &mut history.deletes {
                discarded += usize::from(delete.discard_after(host, fork));
            }
        }
        discarded
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
    /// a discarded write present, a discarded delete of an acknowledged write applied, or any
    /// key holding a value never written.
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
            let host = api.host();
            let deleted = history.deletes.iter().any(Outcome::is_acknowledged);
            let maybe_deleted = history
                .deletes
                .iter()
                .any(|delete| *delete != Outcome::Discarded);
            if found.is_some() && deleted {
                bail!("{key} is still on {host} after an acknowledged delete");
            }
            if found.is_some() && history.written == Outcome::Discarded {
                bail!("{key} is on {host}, but a promotion discarded its write");
            }
            if found.is_none() && history.written.is_acknowledged() && !maybe_deleted {
                bail!("the acknowledged write of {key} is missing on {host}");
            }
        }
        Ok(())
    }
}

/// Returns the outcome of a write sent to `host` from the client's result.
pub fn outcome_of(host: &str, result: &anyhow::Result<crate::client::ApiResponse>) -> Outcome {
    match result {
        Ok(response) if (200..300).contains(&response.status) => Outcome::Acknowledged {
            host: host.to_owned(),
            index: response
                .index
                .as_deref()
                .and_then(|index| parse_index(index).ok())
                .map(|state| state.replicated_index),
        },
        _ => Outcome::Unknown,
    }
}

/// Returns `value` as the JSON body of a write.
pub fn body_of(value: &str) -> Value {
    serde_json::json!({ "v": value })
}
