//! The server config file, in HCL or JSON, with Vault's layout.
//!
//! Settings Coffer implements are parsed and checked. Vault settings that have no meaning here
//! (`ui`, `disable_mlock`, ...) are accepted with a warning, so existing Vault configs load.
//! Any other key is rejected with its name, so a typo never passes silently.

mod replication;
mod syntax;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use syntax::{Item, line_of, parse_items};
use values::{bool_value, duration_value, socket_addr, string_value, u64_value};

/// An error in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid HCL or JSON.
    #[error("the config is not valid {format}: {message}")]
    Syntax {
        /// `HCL` or `JSON`.
        format: &'static str,
        /// The parser's message, with the position where the parser gives one.
        message: String,
    },
    /// A setting is unknown or has a bad value.
    #[error("{0}")]
    Invalid(String),
}

/// The default API address of a listener.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8200";
/// The default `max_request_size`: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 32 << 20;

/// A parsed config file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// The API listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// The storage backend, when the file names one.
    pub storage: Option<StorageConfig>,
    /// The URL advertised to clients.
    pub api_addr: Option<String>,
    /// The URL advertised to cluster peers.
    pub cluster_addr: Option<String>,
    /// `default_lease_ttl`.
    pub default_lease_ttl: Option<Duration>,
    /// `max_lease_ttl`.
    pub max_lease_ttl: Option<Duration>,
    /// `log_level`: trace, debug, info, warn or error.
    pub log_level: Option<String>,
    /// `log_format`.
    pub log_format: LogFormat,
    /// The `replication` block.
    pub replication: ReplicationConfig,
    /// One message per accepted setting that has no effect.
    pub warnings: Vec<String>,
}

/// One `listener "tcp"` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The API address.
    pub address: SocketAddr,
    /// The cluster address, when given.
    pub cluster_address: Option<SocketAddr>,
    /// Whether the listener serves plain HTTP.
    pub tls_disable: bool,
    /// The PEM certificate chain, required unless `tls_disable`.
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key, required unless `tls_disable`.
    pub tls_key_file: Option<PathBuf>,
    /// Maximum request body size in bytes.
    pub max_request_size: u64,
    /// Time a request may take (`max_request_duration`), when given.
    pub max_request_duration: Option<Duration>,
}

/// The storage backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// `storage "lmdb" { path, map_size }`.
    Lmdb {
        /// The directory of the LMDB environment.
        path: PathBuf,
        /// The LMDB map size in bytes, when given.
        map_size: Option<u64>,
    },
    /// `storage "inmem" {}`: nothing survives a restart.
    InMem,
}

/// The log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `replication { ... }` block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// WAL entries kept for secondaries that fall behind.
    pub logshipper_buffer_length: Option<u64>,
    /// Bytes of WAL kept for secondaries that fall behind.
    pub logshipper_buffer_size: Option<u64>,
    /// How long a secondary waits to apply its own forwarded write before it answers.
    pub best_effort_wal_wait_duration: Option<Duration>,
    /// WAL entries kept on disk (`wal_retain`, a Coffer setting).
    pub wal_retain: Option<u64>,
    /// Interval between the primary's heartbeats (`heartbeat_interval`, a Coffer setting).
    pub heartbeat_interval: Option<Duration>,
    /// Silence after which either side drops the connection (`heartbeat_timeout`, a Coffer
    /// setting).
    pub heartbeat_timeout: Option<Duration>,
}

/// Vault top-level settings that Coffer accepts and ignores.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "ui",
    "disable_mlock",
    "cluster_name",
    "pid_file",
    "ha_storage",
    "seal",
    "cache_size",
    "disable_cache",
    "plugin_directory",
    "telemetry",
    "raw_storage_endpoint",
    "log_file",
    "log_requests_level",
    "default_max_request_duration",
    "disable_clustering",
    "disable_sealwrap",
    "disable_performance_standby",
    "introspection_endpoint",
    "enable_response_header_hostname",
    "enable_response_header_raft_node_id",
    "license_path",
    "service_registration",
];

/// Vault listener settings that Coffer accepts and ignores.
const IGNORED_LISTENER: &[&str] = &[
    "tls_min_version",
    "tls_max_version",
    "tls_cipher_suites",
    "tls_prefer_server_cipher_suites",
    "tls_client_ca_file",
    "tls_require_and_verify_client_cert",
    "tls_disable_client_certs",
    "x_forwarded_for_authorized_addrs",
    "x_forwarded_for_hop_skips",
    "x_forwarded_for_reject_not_authorized",
    "x_forwarded_for_reject_not_present",
    "proxy_protocol_behavior",
    "proxy_protocol_authorized_addrs",
    "telemetry",
    "unauthenticated_metrics_access",
    "http_idle_timeout",
    "http_read_header_timeout",
    "http_read_timeout",
    "http_write_timeout",
    "custom_response_headers",
];

impl Config {
    /// Merges a config read after this one, as from the next file of a config directory.
    /// Listeners and warnings add up, and a setting in `later` replaces the same setting here.
    /// Fails when both name a storage backend.
    pub fn merge(mut self, later: Config) -> Result<Config, ConfigError> {
        if self.storage.is_some() && later.storage.is_some() {
            return Err(ConfigError::Invalid(
                "more than one config file has a storage block; keep exactly one".into(),
            ));
        }
        self.listeners.extend(later.listeners);
        self.storage = later.storage.or(self.storage);
        self.api_addr = later.api_addr.or(self.api_addr);
        self.cluster_addr = later.cluster_addr.or(self.cluster_addr);
        self.default_lease_ttl = later.default_lease_ttl.or(self.default_lease_ttl);
        self.max_lease_ttl = later.max_lease_ttl.or(self.max_lease_ttl);
        self.log_level = later.log_level.or(self.log_level);
        if later.log_format != LogFormat::default() {
            self.log_format = later.log_format;
        }
        let replication = &mut self.replication;
        let newer = later.replication;
        replication.logshipper_buffer_length = newer
            .logshipper_buffer_length
            .or(replication.logshipper_buffer_length);
        replication.logshipper_buffer_size = newer
            .logshipper_buffer_size
            .or(replication.logshipper_buffer_size);
        replication.best_effort_wal_wait_duration = newer
            .best_effort_wal_wait_duration
            .or(replication.best_effort_wal_wait_duration);
        replication.wal_retain = newer.wal_retain.or(replication.wal_retain);
        replication.heartbeat_interval =
            newer.heartbeat_interval.or(replication.heartbeat_interval);
        replication.heartbeat_timeout = newer.heartbeat_timeout.or(replication.heartbeat_timeout);
        replication.engine()?;
        self.warnings.extend(later.warnings);
        Ok(self)
    }
}

/// Parses a config file in HCL or JSON.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    let items = parse_items(text)?;
    let mut parser = Parser {
        text,
        config: Config::default(),
    };
    for item in &items {
        parser.top_level(item)?;
    }
    parser.config.replication.engine()?;
    Ok(parser.config)
}

struct Parser<'t> {
    text: &'t str,
    config: Config,
}

impl Parser<'_> {
    fn top_level(&mut self, item: &Item) -> Result<(), ConfigError> {
        match item {
            Item::Attribute { key, value } => self.top_level_attribute(key, value),
            Item::Block {
                identifier,
                labels,
                body,
            } => self.top_level_block(identifier, labels, body),
        }
    }

    fn top_level_attribute(&mut self, key: &str, value: &Value) -> Result<(), ConfigError> {
        let config = &mut self.config;
        match key {
            "api_addr" => config.api_addr = Some(string_value(key, value)?),
            "cluster_addr" => config.cluster_addr = Some(string_value(key, value)?),
            "default_lease_ttl" => config.default_lease_ttl = Some(duration_value(key, value)?),
            "max_lease_ttl" => config.max_lease_ttl = Some(duration_value(key, value)?),
            "log_level" => config.log_level = Some(log_level(value)?),
            "log_format" => config.log_format = log_format(value)?,
            key if IGNORED_TOP_LEVEL.contains(&key) => self.ignore(key, None),
            key => return Err(self.unknown(key, "the top level")),
        }
        Ok(())
    }

    fn top_level_block(
        &mut self,
        identifier: &str,
        labels: &[String],
        body: &[Item],
    ) -> Result<(), ConfigError> {
        match identifier {
            "listener" => {
                let listener = self.listener(single_label(identifier, labels)?, body)?;
                self.config.listeners.push(listener);
            }
            "storage" | "backend" => {
                let storage = self.storage(single_label(identifier, labels)?, body)?;
                if self.config.storage.replace(storage).is_some() {
                    return Err(ConfigError::Invalid(
                        "the config has more than one storage block; keep exactly one".into(),
                    ));
                }
            }
            "replication" => self.replication(body)?,
            key if IGNORED_TOP_LEVEL.contains(&key) => self.ignore(key, None),
            key => return Err(self.unknown(key, "the top level")),
        }
        Ok(())
    }

    fn listener(&mut self, kind: &str, body: &[Item]) -> Result<ListenerConfig, ConfigError> {
        if kind != "tcp" {
            return Err(ConfigError::Invalid(format!(
                "listener type {kind:?} is not supported; use listener \"tcp\""
            )));
        }
        let mut listener = ListenerConfig {
            address: socket_addr("address", &Value::from(DEFAULT_ADDRESS))?,
            cluster_address: None,
            tls_disable: false,
            tls_cert_file: None,
            tls_key_file: None,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_request_duration: None,
        };
        for (key, value) in self.attributes(body, "listener \"tcp\"")? {
            self.listener_setting(&mut listener, key, value)?;
        }
        check_listener_tls(&listener)?;
        Ok(listener)
    }

    fn listener_setting(
        &mut self,
        listener: &mut ListenerConfig,
        key: &str,
        value: &Value,
    ) -> Result<(), ConfigError> {
        match key {
            "address" => listener.address = socket_addr(key, value)?,
            "cluster_address" => listener.cluster_address = Some(socket_addr(key, value)?),
            "tls_disable" => listener.tls_disable = bool_value(key, value)?,
            "tls_cert_file" => listener.tls_cert_file = Some(string_value(key, value)?.into()),
            "tls_key_file" => listener.tls_key_file = Some(string_value(key, value)?.into()),
            "max_request_size" => listener.max_request_size = max_request_size(value)?,
            "max_request_duration" => {
                listener.max_request_duration = Some(duration_value(key, value)?);
            }
            key if IGNORED_LISTENER.contains(&key) => self.ignore(key, Some("listener \"tcp\"")),
            key => return Err(self.unknown(key, "listener \"tcp\"")),
        }
        Ok(())
    }

    fn storage(&mut self, kind: &str, body: &[Item]) -> Result<StorageConfig, ConfigError> {
        let context = format!("storage {kind:?}");
        let attributes = self.attributes(body, &context)?;
        match kind {
            "inmem" => {
                if let Some((key, _)) = attributes.first() {
                    return Err(self.unknown(key, &context));
                }
                Ok(StorageConfig::InMem)
            }
            "lmdb" | "file" | "raft" => self.lmdb_storage(kind, &context, &attributes),
            other => Err(ConfigError::Invalid(format!(
                "storage type {other:?} is not supported; use storage \"lmdb\" {{ path = \"...\" }} \
                 or storage \"inmem\" {{}}"
            ))),
        }
    }

    fn lmdb_storage(
        &mut self,
        kind: &str,
        context: &str,
        attributes: &[(&str, &Value)],
    ) -> Result<StorageConfig, ConfigError> {
        if kind != "lmdb" {
            self.config.warnings.push(format!(
                "storage {kind:?} is served by LMDB in Coffer; its path holds an LMDB environment"
            ));
        }
        let mut path = None;
        let mut map_size = None;
        for (key, value) in attributes {
            match *key {
                "path" => path = Some(PathBuf::from(string_value(key, value)?)),
                "map_size" => map_size = Some(u64_value(key, value)?),
                _ if kind != "lmdb" => self.ignore(key, Some(context)),
                _ => return Err(self.unknown(key, context)),
            }
        }
        let path = path.ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{context} needs a path, such as path = \"/var/lib/coffer\""
            ))
        })?;
        Ok(StorageConfig::Lmdb { path, map_size })
    }

    fn replication(&mut self, body: &[Item]) -> Result<(), ConfigError> {
        for (key, value) in self.attributes(body, "replication")? {
            let replication = &mut self.config.replication;
            match key {
                "logshipper_buffer_length" => {
                    replication.logshipper_buffer_length = Some(u64_value(key, value)?);
                }
                "logshipper_buffer_size" => {
                    replication.logshipper_buffer_size = Some(u64_value(key, value)?);
                }
                "best_effort_wal_wait_duration" => {
                    replication.best_effort_wal_wait_duration = Some(duration_value(key, value)?);
                }
                "wal_retain" => replication.wal_retain = Some(u64_value(key, value)?),
                "heartbeat_interval" => {
                    replication.heartbeat_interval = Some(duration_value(key, value)?);
                }
                "heartbeat_timeout" => {
                    replication.heartbeat_timeout = Some(duration_value(key, value)?);
                }
                key => return Err(self.unknown(key, "replication")),
            }
        }
        Ok(())
    }

    /// Collects the attributes of a block body. A nested block is accepted only when its name
    /// is an ignored listener setting such as `telemetry`.
    fn attributes<'i>(
        &mut self,
        body: &'i [Item],
        context: &str,
    ) -> Result<Vec<(&'i str, &'i Value)>, ConfigError> {
        let mut attributes = Vec::new();
        for item in body {
            match item {
                Item::Attribute { key, value } => attributes.push((key.as_str(), value)),
                Item::Block { identifier, .. }
                    if IGNORED_LISTENER.contains(&identifier.as_str()) =>
                {
                    self.ignore(identifier, Some(context));
                }
                Item::Block { identifier, .. } => return Err(self.unknown(identifier, context)),
            }
        }
        Ok(attributes)
    }

    fn ignore(&mut self, key: &str, context: Option<&str>) {
        let place = context
            .map(|context| format!(" in {context}"))
            .unwrap_or_default();
        self.config.warnings.push(format!(
            "the setting {key:?}{place} has no effect in Coffer"
        ));
    }

    fn unknown(&self, key: &str, context: &str) -> ConfigError {
        let line = line_of(self.text, key)
            .map(|line| format!(" (line {line})"))
            .unwrap_or_default();
        ConfigError::Invalid(format!("unknown setting {key:?} in {context}{line}"))
    }
}

fn single_label<'l>(identifier: &str, labels: &'l [String]) -> Result<&'l str, ConfigError> {
    match labels {
        [label] => Ok(label),
        _ => Err(ConfigError::Invalid(format!(
            "a {identifier} block needs exactly one label, such as {identifier} \"tcp\" {{ ... }}"
        ))),
    }
}

fn check_listener_tls(listener: &ListenerConfig) -> Result<(), ConfigError> {
    if listener.tls_disable {
        return Ok(());
    }
    if listener.tls_cert_file.is_none() || listener.tls_key_file.is_none() {
        return Err(ConfigError::Invalid(format!(
            "listener \"tcp\" at {}: tls_cert_file and tls_key_file are required unless \
             tls_disable = true",
            listener.address
        )));
    }
    Ok(())
}

fn log_level(value: &Value) -> Result<String, ConfigError> {
    let level = string_value("log_level", value)?.to_ascii_lowercase();
    match level.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(level),
        "warning" => Ok("warn".into()),
        "err" => Ok("error".into()),
        other => Err(ConfigError::Invalid(format!(
            "log_level {other:?} is invalid; use trace, debug, info, warn or error"
        ))),
    }
}

fn log_format(value: &Value) -> Result<LogFormat, ConfigError> {
    match string_value("log_format", value)?.as_str() {
        "text" | "standard" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::Invalid(format!(
            "log_format {other:?} is invalid; use text or json"
        ))),
    }
}

fn max_request_size(value: &Value) -> Result<u64, ConfigError> {
    match u64_value("max_request_size", value)? {
        0 => Ok(DEFAULT_MAX_REQUEST_SIZE),
        size => Ok(size),
    }
}

#[cfg(test)]
mod tests;
