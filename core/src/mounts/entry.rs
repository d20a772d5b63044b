//! One row of a mount or auth table and the JSON shape clients read it in.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::storage::Partition;

/// Which table an entry belongs to: secrets engines or auth methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TableKind {
    /// Secrets engines, routed at `<path>`.
    Secrets,
    /// Auth methods, routed at `auth/<path>`.
    Auth,
}

impl TableKind {
    /// The partition and key of this table's shared or local half.
    pub fn location(self, local: bool) -> (Partition, &'static str) {
        match (self, local) {
            (TableKind::Secrets, false) => (Partition::Shared, "core/mounts"),
            (TableKind::Secrets, true) => (Partition::Local, "core/local-mounts"),
            (TableKind::Auth, false) => (Partition::Shared, "core/auth"),
            (TableKind::Auth, true) => (Partition::Local, "core/local-auth"),
        }
    }

    /// The storage prefix below which every mount of this table keeps its data.
    fn data_root(self) -> &'static str {
        match self {
            TableKind::Secrets => "logical",
            TableKind::Auth => "auth",
        }
    }
}

/// The `config` object of a mount: TTLs in seconds (0 means the system default) and the
/// other settings clients may pass, kept as given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MountConfig {
    /// Default lease TTL in seconds, or 0 for the system default.
    pub default_lease_ttl: u64,
    /// Maximum lease TTL in seconds, or 0 for the system maximum.
    pub max_lease_ttl: u64,
    /// Whether responses may not be cached.
    pub force_no_cache: bool,
    /// Settings such as `listing_visibility` or `token_type`, stored and listed unchanged.
    #[serde(flatten)]
    pub passthrough: Map<String, Value>,
}

/// One mounted secrets engine or auth method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MountEntry {
    /// The mount path with a trailing slash, such as `secret/`; auth paths omit `auth/`.
    pub path: String,
    /// The engine or method type, such as `kv` or `userpass`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text shown in listings.
    pub description: String,
    /// A random name that identifies the mount in audit logs, such as `kv_1a2b3c4d`.
    pub accessor: String,
    /// The random id that names the mount's storage prefix.
    pub uuid: String,
    /// Whether the mount lives only on this node, so it is never replicated.
    pub local: bool,
    /// Whether values are wrapped by the seal as well; stored for clients only.
    pub seal_wrap: bool,
    /// Whether the engine may use external entropy; stored for clients only.
    pub external_entropy_access: bool,
    /// TTLs and passthrough settings.
    pub config: MountConfig,
    /// Engine options; KV keeps its version here as the string `"1"` or `"2"`.
    pub options: BTreeMap<String, String>,
}

impl MountEntry {
    /// A new entry of `table` with a fresh accessor and uuid drawn from `rng`. Accessors look
    /// like Vault's: `kv_1a2b3c4d` for a KV mount, `auth_userpass_1a2b3c4d` for an auth method.
    pub fn new(
        table: TableKind,
        path: &str,
        kind: &str,
        local: bool,
        rng: &mut dyn CryptoRngCore,
    ) -> MountEntry {
        let accessor_kind = match (table, kind) {
            (TableKind::Secrets, "kv" | "generic") => String::from("kv"),
            (TableKind::Secrets, other) => other.to_owned(),
            (TableKind::Auth, other) => format!("auth_{other}"),
        };
        let suffix = hex::encode(crate::ids::bytes::<4>(rng));
        MountEntry {
            path: path.to_owned(),
            kind: kind.to_owned(),
            description: String::new(),
            accessor: format!("{accessor_kind}_{suffix}"),
            uuid: crate::ids::uuid(rng),
            local,
            seal_wrap: false,
            external_entropy_access: false,
            config: MountConfig::default(),
            options: BTreeMap::new(),
        }
    }

    /// The partition holding this mount's data: local mounts keep it on the node.
    pub fn data_partition(&self) -> Partition {
        if self.local {
            Partition::Local
        } else {
            Partition::Shared
        }
    }

    /// The prefix of every key of this mount's data, such as `logical/<uuid>/`.
    pub fn data_prefix(&self, kind: TableKind) -> String {
        format!("{}/{}/", kind.data_root(), self.uuid)
    }

    /// Whether this is a KV mount of version 2.
    pub fn is_kv_v2(&self) -> bool {
        self.kind == "kv" && self.options.get("version").map(String::as_str) == Some("2")
    }

    /// The entry as `sys/mounts` lists it, with the fields the Go client and vaultrs require.
    pub fn to_json(&self) -> Value {
        let mut config = self.config.passthrough.clone();
        config.insert(
            "default_lease_ttl".into(),
            json!(self.config.default_lease_ttl),
        );
        config.insert("max_lease_ttl".into(), json!(self.config.max_lease_ttl));
        config.insert("force_no_cache".into(), json!(self.config.force_no_cache));
        let options = if self.options.is_empty() {
            Value::Null
        } else {
            json!(self.options)
        };
        json!({
            "accessor": self.accessor,
            "config": config,
            "description": self.description,
            "external_entropy_access": self.external_entropy_access,
            "local": self.local,
            "options": options,
            "plugin_version": "",
            "running_plugin_version": format!("v{}+builtin", env!("CARGO_PKG_VERSION")),
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.kind,
            "uuid": self.uuid,
        })
    }
}

/// A stored table: the JSON value at `core/mounts` and its siblings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredTable {
    /// The entries, in the order they were mounted.
    pub entries: Vec<MountEntry>,
}
