//! [`LmdbStorage`]: the node's durable storage, one LMDB environment with one database per
//! partition.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use coffer_core::storage::{Partition, Storage, StorageError, Transaction};
use heed::types::{Bytes, Str};
use heed::{Database, Env, EnvOpenOptions, MdbError, RoTxn, RwTxn, WithoutTls};

/// The default LMDB map size: 16 GiB of address space. LMDB reserves it virtually and the file
/// grows only as data is written.
pub const DEFAULT_MAP_SIZE: usize = 16 << 30;

type Db = Database<Str, Bytes>;

/// An LMDB environment holding the databases `shared`, `local`, `wal`, `merkle` and `meta`.
///
/// Reads run on LMDB read transactions, which see a consistent snapshot and never block the
/// writer. Writes run in one LMDB write transaction each, committed with LMDB's default
/// synchronous flush, so a commit is on disk when [`Storage::write`] returns.
///
/// The environment is opened without thread-local reader slots (`MDB_NOTLS`), so a read
/// transaction is `Send`: a [`LmdbSnapshot`] can move between the threads of an async runtime.
pub struct LmdbStorage {
    env: Env<WithoutTls>,
    databases: [Db; 5],
    path: PathBuf,
    map_size: usize,
}

impl LmdbStorage {
    /// Opens or creates the environment in the directory `path`, creating the directory and the
    /// five databases when missing.
    pub fn open(path: &Path, map_size: usize) -> Result<LmdbStorage, StorageError> {
        std::fs::create_dir_all(path).map_err(|error| {
            StorageError::Backend(format!(
                "failed to create the storage directory {}: {error}",
                path.display()
            ))
        })?;
        let env = open_env(path, map_size)?;
        let databases = create_databases(&env)?;
        Ok(LmdbStorage {
            env,
            databases,
            path: path.to_owned(),
            map_size,
        })
    }

    /// Returns the directory of the environment.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pins the committed state in an owned read transaction that later writes do not change.
    /// A snapshot keeps LMDB from reusing the pages it sees, so hold it only while needed.
    pub fn pin(&self) -> Result<LmdbSnapshot, StorageError> {
        let txn = self
            .env
            .clone()
            .static_read_txn()
            .map_err(|error| self.error(error))?;
        Ok(LmdbSnapshot {
            txn,
            databases: self.databases,
            map_size: self.map_size,
        })
    }

    /// Closes the environment and waits until LMDB has released it, so the same directory can
    /// be opened again in this process. It waits for every [`LmdbSnapshot`] to be dropped too.
    pub fn close(self) {
        self.env.prepare_for_closing().wait();
    }

    fn error(&self, error: heed::Error) -> StorageError {
        backend_error(error, self.map_size)
    }
}

#[allow(unsafe_code)]
fn open_env(path: &Path, map_size: usize) -> Result<Env<WithoutTls>, StorageError> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(map_size)
        .max_dbs(Partition::ALL.len() as u32);
    // SAFETY: LMDB requires that the environment's files are not modified by anything but
    // LMDB, and that one process opens a given environment only once. Coffer owns its storage
    // directory, and heed rejects a second open of the same path in this process with
    // `EnvAlreadyOpened`. No flags that weaken durability (NO_SYNC, WRITE_MAP) are set.
    let env = unsafe { options.open(path) };
    env.map_err(|error| {
        StorageError::Backend(format!(
            "failed to open the LMDB environment in {}: {error}",
            path.display()
        ))
    })
}

fn create_databases(env: &Env<WithoutTls>) -> Result<[Db; 5], StorageError> {
    let mut txn = env
        .write_txn()
        .map_err(|error| backend_error(error, usize::MAX))?;
    let mut databases = Vec::with_capacity(Partition::ALL.len());
    for partition in Partition::ALL {
        let database = env
            .create_database(&mut txn, Some(partition.name()))
            .map_err(|error| backend_error(error, usize::MAX))?;
        databases.push(database);
    }
    txn.commit()
        .map_err(|error| backend_error(error, usize::MAX))?;
    databases
        .try_into()
        .map_err(|_| StorageError::Backend("expected one database per partition".into()))
}

fn backend_error(error: heed::Error, map_size: usize) -> StorageError {
    match error {
        heed::Error::Mdb(MdbError::MapFull) => StorageError::Backend(format!(
            "the LMDB map is full ({map_size} bytes); raise map_size in the storage \"lmdb\" \
             block and restart"
        )),
        other => StorageError::Backend(format!("LMDB failed: {other}")),
    }
}

fn database(databases: &[Db; 5], partition: Partition) -> Db {
    let index = Partition::ALL
        .iter()
        .position(|candidate| *candidate == partition)
        .expect("Partition::ALL lists every partition");
    databases[index]
}

fn get(
    databases: &[Db; 5],
    txn: &RoTxn<'_>,
    partition: Partition,
    key: &str,
    map_size: usize,
) -> Result<Option<Vec<u8>>, StorageError> {
    let value = database(databases, partition)
        .get(txn, key)
        .map_err(|error| backend_error(error, map_size))?;
    Ok(value.map(<[u8]>::to_vec))
}

fn scan(
    databases: &[Db; 5],
    txn: &RoTxn<'_>,
    partition: Partition,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
    map_size: usize,
) -> Result<Vec<String>, StorageError> {
    // LMDB rejects an empty key, even as a range bound, so the empty prefix scans from the
    // first key.
    let lower = match start_after {
        Some(after) if after >= prefix && !after.is_empty() => Bound::Excluded(after),
        _ if prefix.is_empty() => Bound::Unbounded,
        _ => Bound::Included(prefix),
    };
    let range = (lower, Bound::<&str>::Unbounded);
    let iter = database(databases, partition)
        .range(txn, &range)
        .map_err(|error| backend_error(error, map_size))?;
    let mut keys = Vec::new();
    for entry in iter {
        if limit.is_some_and(|limit| keys.len() >= limit) {
            break;
        }
        let (key, _) = entry.map_err(|error| backend_error(error, map_size))?;
        if !key.starts_with(prefix) {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}

struct ReadTxn<'a> {
    storage: &'a LmdbStorage,
    txn: RoTxn<'a, WithoutTls>,
}

/// An owned read transaction over one committed state of an [`LmdbStorage`], from
/// [`LmdbStorage::pin`]. It is `Send`, so a task can keep it across awaits; its writes fail
/// with [`StorageError::ReadOnly`].
pub struct LmdbSnapshot {
    txn: RoTxn<'static, WithoutTls>,
    databases: [Db; 5],
    map_size: usize,
}

impl Transaction for LmdbSnapshot {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        get(&self.databases, &self.txn, partition, key, self.map_size)
    }

    fn put(&mut self, partition: Partition, _key: &str, _value: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn delete(&mut self, partition: Partition, _key: &str) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        let databases = &self.databases;
        scan(
            databases,
            &self.txn,
            partition,
            prefix,
            start_after,
            limit,
            self.map_size,
        )
    }
}

impl Transaction for ReadTxn<'_> {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let storage = self.storage;
        get(
            &storage.databases,
            &self.txn,
            partition,
            key,
            storage.map_size,
        )
    }

    fn put(&mut self, partition: Partition, _key: &str, _value: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn delete(&mut self, partition: Partition, _key: &str) -> Result<(), StorageError> {
        Err(StorageError::ReadOnly { partition })
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        let storage = self.storage;
        let databases = &storage.databases;
        scan(
            databases,
            &self.txn,
            partition,
            prefix,
            start_after,
            limit,
            storage.map_size,
        )
    }
}

struct WriteTxn<'a> {
    storage: &'a LmdbStorage,
    txn: RwTxn<'a>,
}

impl Transaction for WriteTxn<'_> {
    fn get(&self, partition: Partition, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let storage = self.storage;
        get(
            &storage.databases,
            &self.txn,
            partition,
            key,
            storage.map_size,
        )
    }

    fn put(&mut self, partition: Partition, key: &str, value: &[u8]) -> Result<(), StorageError> {
        database(&self.storage.databases, partition)
            .put(&mut self.txn, key, value)
            .map_err(|error| self.storage.error(error))
    }

    fn delete(&mut self, partition: Partition, key: &str) -> Result<(), StorageError> {
        database(&self.storage.databases, partition)
            .delete(&mut self.txn, key)
            .map(|_| ())
            .map_err(|error| self.storage.error(error))
    }

    fn scan(
        &self,
        partition: Partition,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>, StorageError> {
        let storage = self.storage;
        let databases = &storage.databases;
        scan(
            databases,
            &self.txn,
            partition,
            prefix,
            start_after,
            limit,
            storage.map_size,
        )
    }
}

impl Storage for LmdbStorage {
    fn read<R>(&self, body: impl FnOnce(&dyn Transaction) -> R) -> Result<R, StorageError> {
        let txn = self.env.read_txn().map_err(|error| self.error(error))?;
        let snapshot = ReadTxn { storage: self, txn };
        Ok(body(&snapshot))
    }

    fn write<R, E>(&self, body: impl FnOnce(&mut dyn Transaction) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StorageError>,
    {
        let txn = self.env.write_txn().map_err(|error| self.error(error))?;
        let mut write = WriteTxn { storage: self, txn };
        // An error from `body` drops the transaction, which aborts it.
        let result = body(&mut write)?;
        write.txn.commit().map_err(|error| self.error(error))?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL_MAP: usize = 1 << 20;

    fn put(storage: &LmdbStorage, partition: Partition, key: &str, value: &[u8]) {
        storage.write(|txn| txn.put(partition, key, value)).unwrap();
    }

    fn read(storage: &LmdbStorage, partition: Partition, key: &str) -> Option<Vec<u8>> {
        storage
            .read(|txn| txn.get(partition, key))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn committed_write_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        put(&storage, Partition::Shared, "a", b"1");
        put(&storage, Partition::Wal, "a", b"2");
        storage.close();

        let reopened = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        assert_eq!(read(&reopened, Partition::Shared, "a"), Some(b"1".to_vec()));
        assert_eq!(read(&reopened, Partition::Wal, "a"), Some(b"2".to_vec()));
        assert_eq!(read(&reopened, Partition::Local, "a"), None);
    }

    #[test]
    fn failed_write_vanishes_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        let result: Result<(), StorageError> = storage.write(|txn| {
            txn.put(Partition::Shared, "a", b"1")?;
            Err(StorageError::Backend("stop".into()))
        });
        assert!(result.is_err());
        assert_eq!(read(&storage, Partition::Shared, "a"), None);
        storage.close();

        let reopened = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        assert_eq!(read(&reopened, Partition::Shared, "a"), None);
    }

    #[test]
    fn scan_honours_prefix_start_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        for key in ["o/x", "p/a", "p/b", "p/c", "q/a"] {
            put(&storage, Partition::Local, key, b"v");
        }
        let all = storage
            .read(|txn| txn.scan(Partition::Local, "p/", None, None))
            .unwrap()
            .unwrap();
        assert_eq!(all, ["p/a", "p/b", "p/c"]);
        let page = storage
            .read(|txn| txn.scan(Partition::Local, "p/", Some("p/a"), Some(1)))
            .unwrap()
            .unwrap();
        assert_eq!(page, ["p/b"]);
    }

    #[test]
    fn scan_with_empty_prefix_lists_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        for key in ["a", "b/c", "d"] {
            put(&storage, Partition::Wal, key, b"v");
        }
        let all = storage
            .read(|txn| txn.scan(Partition::Wal, "", None, None))
            .unwrap()
            .unwrap();
        assert_eq!(all, ["a", "b/c", "d"]);
        let rest = storage
            .read(|txn| txn.scan(Partition::Wal, "", Some("a"), None))
            .unwrap()
            .unwrap();
        assert_eq!(rest, ["b/c", "d"]);
    }

    #[test]
    fn delete_of_missing_key_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        put(&storage, Partition::Meta, "a", b"1");
        storage
            .write(|txn| {
                txn.delete(Partition::Meta, "a")?;
                txn.delete(Partition::Meta, "missing")
            })
            .unwrap();
        assert_eq!(read(&storage, Partition::Meta, "a"), None);
    }

    #[test]
    fn pinned_snapshot_keeps_state_after_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        put(&storage, Partition::Shared, "a", b"1");
        let pinned = storage.pin().unwrap();
        put(&storage, Partition::Shared, "a", b"2");
        put(&storage, Partition::Shared, "b", b"3");

        // The snapshot moves to another thread, as it does between an async runtime's workers.
        let (old, absent) = std::thread::spawn(move || {
            let old = pinned.get(Partition::Shared, "a").unwrap();
            let absent = pinned.get(Partition::Shared, "b").unwrap();
            (old, absent)
        })
        .join()
        .unwrap();
        assert_eq!(old, Some(b"1".to_vec()));
        assert_eq!(absent, None);
        assert_eq!(read(&storage, Partition::Shared, "a"), Some(b"2".to_vec()));
    }

    #[test]
    fn full_map_names_map_size() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LmdbStorage::open(dir.path(), SMALL_MAP).unwrap();
        let value = vec![7u8; 64 * 1024];
        let result: Result<(), StorageError> = storage.write(|txn| {
            for index in 0..64 {
                txn.put(Partition::Shared, &format!("k{index}"), &value)?;
            }
            Ok(())
        });
        let error = result.unwrap_err().to_string();
        assert!(error.contains("map is full"), "{error}");
        assert!(error.contains("map_size"), "{error}");
    }
}
