//! A node's replication role, as the driver reads it from storage.

use crate::storage::Partition;

/// Prefix of every local key that holds replication state.
pub const ROLE_KEY_PREFIX: &str = "core/replication/";

/// Whether a reload of `changed` may have changed the role: `None` (everything), or a local
/// key below [`ROLE_KEY_PREFIX`].
pub fn touches_role(changed: Option<&[(Partition, String)]>) -> bool {
    let Some(changed) = changed else {
        return true;
    };
    changed
        .iter()
        .any(|(partition, key)| *partition == Partition::Local && key.starts_with(ROLE_KEY_PREFIX))
}

#[cfg(test)]
mod tests {
    use crate::Core;
    use crate::handler::CoreConfig;
    use crate::storage::{MemStorage, Partition, Storage};

    #[test]
    fn reload_raises_generation_only_for_replication_keys() {
        let core = Core::new(CoreConfig::default());
        let storage = MemStorage::new();
        let before = core.replication_generation();
        let other = [(Partition::Local, "core/token/salt".to_owned())];
        let shared = [(Partition::Shared, "core/replication/x".to_owned())];
        storage
            .read(|txn| {
                core.reload(txn, Some(&other)).unwrap();
                core.reload(txn, Some(&shared)).unwrap();
            })
            .unwrap();
        assert_eq!(core.replication_generation(), before);
        let role = [(
            Partition::Local,
            "core/replication/performance/secondary".to_owned(),
        )];
        storage
            .read(|txn| core.reload(txn, Some(&role)).unwrap())
            .unwrap();
        assert_eq!(core.replication_generation(), before + 1);
        storage.read(|txn| core.reload(txn, None).unwrap()).unwrap();
        assert_eq!(core.replication_generation(), before + 2);
    }
}
