//! The `replication { ... }` block as the replication engine's settings.

use coffer_core::replication::ReplicationConfig as EngineConfig;

use super::{ConfigError, ReplicationConfig};

impl ReplicationConfig {
    /// Returns the engine's settings: each value given in the block over the engine's default.
    /// Fails on a value the engine cannot run with, naming the setting.
    pub fn engine(&self) -> Result<EngineConfig, ConfigError> {
        let defaults = EngineConfig::default();
        let config = EngineConfig {
            logshipper_buffer_length: positive_size(
                "logshipper_buffer_length",
                self.logshipper_buffer_length,
                defaults.logshipper_buffer_length,
            )?,
            logshipper_buffer_size: positive_size(
                "logshipper_buffer_size",
                self.logshipper_buffer_size,
                defaults.logshipper_buffer_size,
            )?,
            wal_retain: match self.wal_retain {
                Some(0) => return Err(zero("wal_retain")),
                Some(retain) => retain,
                None => defaults.wal_retain,
            },
            heartbeat_interval: self
                .heartbeat_interval
                .unwrap_or(defaults.heartbeat_interval),
            heartbeat_timeout: self.heartbeat_timeout.unwrap_or(defaults.heartbeat_timeout),
            best_effort_wal_wait_duration: self
                .best_effort_wal_wait_duration
                .unwrap_or(defaults.best_effort_wal_wait_duration),
            ..defaults
        };
        if config.heartbeat_interval.is_zero() {
            return Err(zero("heartbeat_interval"));
        }
        if config.heartbeat_timeout <= config.heartbeat_interval {
            return Err(ConfigError::Invalid(format!(
                "replication heartbeat_timeout ({:?}) must be longer than heartbeat_interval \
                 ({:?}); a timeout of several intervals tolerates a lost heartbeat",
                config.heartbeat_timeout, config.heartbeat_interval
            )));
        }
        Ok(config)
    }
}

fn positive_size(key: &str, value: Option<u64>, default: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(default),
        Some(0) => Err(zero(key)),
        Some(value) => usize::try_from(value).map_err(|_| {
            ConfigError::Invalid(format!(
                "replication {key} = {value} is too large for this platform"
            ))
        }),
    }
}

fn zero(key: &str) -> ConfigError {
    ConfigError::Invalid(format!(
        "replication {key} = 0 is invalid: it must be at least 1"
    ))
}
