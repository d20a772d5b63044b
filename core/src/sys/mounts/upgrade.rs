//! Upgrading a KV version 1 mount to version 2 in place.

use serde_json::{Map, Value};

use crate::Core;
use crate::engines::migrate_kv_v1_key;
use crate::error::Error;
use crate::handler::Ctx;
use crate::mounts::{MountEntry, TableKind, purge_prefix};
use crate::storage::Transaction;

/// Moves every secret of `entry` into the version 2 layout as version 1 of its key.
///
/// The mount gets a new uuid, so the new layout starts under an empty prefix and no version 1
/// key can collide with a version 2 storage key; the old prefix is deleted afterwards.
/// NOTE: the whole mount moves in one transaction, so a very large mount makes one large write.
pub(super) fn to_kv_v2(
    ctx: &mut Ctx<'_>,
    core: &Core,
    entry: &mut MountEntry,
    txn: &mut dyn Transaction,
) -> Result<(), Error> {
    let partition = entry.data_partition();
    let old_prefix = entry.data_prefix(TableKind::Secrets);
    entry.uuid = crate::ids::uuid(ctx.rng);
    let new_prefix = entry.data_prefix(TableKind::Secrets);
    let now = ctx.now;
    let keys = txn.scan(partition, &old_prefix, None, None)?;
    let mut view = core.barrier.view(txn, ctx.rng)?;
    for key in keys {
        let Some(data) = view.get_json::<Map<String, Value>>(partition, &key)? else {
            continue;
        };
        let path = &key[old_prefix.len()..];
        migrate_kv_v1_key(now, partition, &new_prefix, path, data, &mut view)?;
    }
    purge_prefix(view.raw(), partition, &old_prefix)
}
