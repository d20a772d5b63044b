//! Whole-node state snapshots, to show that a rejected action changed nothing.

use coffer_core::storage::Partition;

use crate::harness::Control;

/// The committed keys and values of one partition, in key order.
type PartitionDump = Vec<(String, Vec<u8>)>;

/// Every committed key and value of one host, in every partition, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState(Vec<(Partition, PartitionDump)>);

impl NodeState {
    /// Takes the committed state of `host`.
    pub fn of(control: &Control, host: &str) -> NodeState {
        let storage = control.storage(host);
        NodeState(
            Partition::ALL
                .iter()
                .map(|partition| (*partition, storage.dump(*partition)))
                .collect(),
        )
    }

    /// Lists the keys that differ between `self` and `later`, for a failure message.
    pub fn changed_keys(&self, later: &NodeState) -> Vec<String> {
        let mut changed = Vec::new();
        for ((partition, before), (_, after)) in self.0.iter().zip(&later.0) {
            for (key, value) in before {
                if !after.iter().any(|(k, v)| k == key && v == value) {
                    changed.push(format!("{}:{key}", partition.name()));
                }
            }
            for (key, _) in after {
                if !before.iter().any(|(k, _)| k == key) {
                    changed.push(format!("{}:{key} (new)", partition.name()));
                }
            }
        }
        changed
    }
}
