//! What KV version 2 stores: the mount's settings, one metadata record per key and one value
//! per version, each under its own storage key so a write touches O(1) keys.
//!
//! Layout below the mount's prefix:
//! - `config`: [`Settings`] for the whole mount.
//! - `metadata/<path>`: the key's [`KeyMetadata`]. Listing `metadata/` lists the key tree.
//! - `versions/<sha256 of path>/<n>`: the data of version `n`. Hashing the path keeps the
//!   versions of `a` apart from those of `a/b`, so a prefix scan finds exactly one key's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::barrier::SecureView;
use crate::error::Error;
use crate::time::{Timestamp, format_go_duration};

use super::super::Location;

/// How many versions a key keeps when neither it nor the mount sets a maximum.
const DEFAULT_MAX_VERSIONS: u64 = 10;

/// The mount-wide settings at `config`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    /// Versions kept per key; 0 means the default of 10.
    pub(crate) max_versions: u64,
    /// Whether every write must carry `options.cas`.
    pub(crate) cas_required: bool,
    /// How long after its creation a version counts as deleted; zero means never.
    pub(crate) delete_version_after: Duration,
}

impl Settings {
    /// Loads the mount's settings, or the defaults when none were written.
    pub(crate) fn load(location: &Location, view: &SecureView<'_>) -> Result<Settings, Error> {
        let key = location.key("config");
        Ok(view.get_json(location.partition, &key)?.unwrap_or_default())
    }

    /// Stores the mount's settings.
    pub(crate) fn save(&self, location: &Location, view: &mut SecureView<'_>) -> Result<(), Error> {
        view.put_json(location.partition, &location.key("config"), self)
    }

    /// Builds the settings as `GET config` returns them.
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("cas_required".into(), json!(self.cas_required));
        data.insert(
            "delete_version_after".into(),
            json!(format_go_duration(self.delete_version_after)),
        );
        data.insert("max_versions".into(), json!(self.max_versions));
        data
    }
}

/// What is known about one version of a key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct VersionMeta {
    /// When the version was written.
    pub(crate) created_time: Timestamp,
    /// When the version was or will be soft-deleted.
    pub(crate) deletion_time: Option<Timestamp>,
    /// Whether the version's data was destroyed.
    pub(crate) destroyed: bool,
}

impl VersionMeta {
    /// Whether the version's data cannot be read at `now`.
    pub(crate) fn is_gone(&self, now: Timestamp) -> bool {
        self.destroyed || self.deletion_time.is_some_and(|at| at <= now)
    }

    /// The version's entry in a metadata read's `versions` map.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "created_time": self.created_time.to_rfc3339(),
            "deletion_time": self.deletion_time.map(Timestamp::to_rfc3339).unwrap_or_default(),
            "destroyed": self.destroyed,
        })
    }
}

/// The metadata record of one key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct KeyMetadata {
    /// When the key was first written.
    pub(crate) created_time: Timestamp,
    /// When the key or its metadata last changed.
    pub(crate) updated_time: Timestamp,
    /// The newest version number; 0 before the first write.
    pub(crate) current_version: u64,
    /// The oldest version still kept, or 0 until versions have been pruned.
    pub(crate) oldest_version: u64,
    /// Versions kept for this key; 0 defers to the mount.
    pub(crate) max_versions: u64,
    /// Whether writes to this key must carry `options.cas`.
    pub(crate) cas_required: bool,
    /// Soft-delete versions this long after their creation; zero defers to the mount.
    pub(crate) delete_version_after: Duration,
    /// Free-form string metadata set by clients.
    pub(crate) custom_metadata: Option<BTreeMap<String, String>>,
    /// Every kept version by number.
    pub(crate) versions: BTreeMap<u64, VersionMeta>,
}

impl KeyMetadata {
    /// Creates a record for a key first touched at `now`.
    pub(crate) fn new(now: Timestamp) -> KeyMetadata {
        KeyMetadata {
            created_time: now,
            updated_time: now,
            ..KeyMetadata::default()
        }
    }

    /// Loads the metadata of `path`, if the key exists.
    pub(crate) fn load(
        location: &Location,
        path: &str,
        view: &SecureView<'_>,
    ) -> Result<Option<KeyMetadata>, Error> {
        view.get_json(location.partition, &metadata_key(location, path))
    }

    /// Stores the metadata of `path`.
    pub(crate) fn save(
        &self,
        location: &Location,
        path: &str,
        view: &mut SecureView<'_>,
    ) -> Result<(), Error> {
        view.put_json(location.partition, &metadata_key(location, path), self)
    }

    /// Returns the number of versions to keep: the key's, else the mount's, else the default.
    pub(crate) fn effective_max_versions(&self, settings: &Settings) -> u64 {
        [
            self.max_versions,
            settings.max_versions,
            DEFAULT_MAX_VERSIONS,
        ]
        .into_iter()
        .find(|max| *max > 0)
        .unwrap_or(DEFAULT_MAX_VERSIONS)
    }

    /// Returns how long new versions live before they count as deleted, or zero for ever. When both
    /// the key and the mount set a duration the shorter applies, so a key cannot outlive the
    /// mount's rule.
    pub(crate) fn effective_delete_after(&self, settings: &Settings) -> Duration {
        let (own, mount) = (self.delete_version_after, settings.delete_version_after);
        match (own.is_zero(), mount.is_zero()) {
            (true, _) => mount,
            (false, true) => own,
            (false, false) => own.min(mount),
        }
    }

    /// Builds the `metadata` object of a data read or write for `version`.
    pub(crate) fn version_json(&self, version: u64, meta: &VersionMeta) -> Value {
        json!({
            "created_time": meta.created_time.to_rfc3339(),
            "custom_metadata": self.custom_metadata,
            "deletion_time": meta.deletion_time.map(Timestamp::to_rfc3339).unwrap_or_default(),
            "destroyed": meta.destroyed,
            "version": version,
        })
    }

    /// Builds the record as `GET metadata/<path>` returns it.
    pub(crate) fn to_json(&self) -> Map<String, Value> {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(number, meta)| (number.to_string(), meta.to_json()))
            .collect();
        let value = json!({
            "cas_required": self.cas_required,
            "created_time": self.created_time.to_rfc3339(),
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": format_go_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": self.updated_time.to_rfc3339(),
            "versions": versions,
        });
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// Returns the storage key of the metadata of `path`.
pub(crate) fn metadata_key(location: &Location, path: &str) -> String {
    location.key(&format!("metadata/{path}"))
}

/// Returns the prefix below which every version of `path` is stored.
pub(crate) fn versions_prefix(location: &Location, path: &str) -> String {
    let digest = Sha256::digest(path.as_bytes());
    location.key(&format!("versions/{}/", hex::encode(digest)))
}

/// Returns the storage key of version `version` of `path`.
pub(crate) fn version_key(location: &Location, path: &str, version: u64) -> String {
    format!("{}{version}", versions_prefix(location, path))
}
