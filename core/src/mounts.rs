//! Mount and auth tables: shared entries in the shared partition, `local=true` entries in the
//! local partition, and routing of request paths to mounts.

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;

/// The cached mount and auth tables.
#[derive(Default)]
pub struct MountTables {}

impl MountTables {
    /// Empty tables.
    pub fn new() -> MountTables {
        MountTables::default()
    }

    /// Reloads the tables when their keys are in `changed`, or always for `None`.
    pub fn reload(
        &self,
        _core: &Core,
        _txn: &dyn Transaction,
        _changed: Option<&[(Partition, String)]>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

/// Writes the mount and auth tables of a newly initialised barrier: `cubbyhole/` (local),
/// `identity/`, `sys/` and the `token/` auth method.
pub fn initialize(_core: &Core, _view: &mut SecureView<'_>, _now: Timestamp) -> Result<(), Error> {
    Ok(())
}
