//! Checks of what must hold after every run, over the hosts' committed storage and the trace.

use anyhow::bail;
use coffer_core::storage::Partition;

use crate::harness::Control;
use crate::trace::Trace;

/// Fails when any host's storage, in any partition, contains one of `secrets` in clear, because
/// stored and replicated values must be barrier ciphertext and tokens are stored only hashed.
pub fn no_plaintext_in_storage(
    control: &Control,
    hosts: &[String],
    secrets: &[String],
) -> anyhow::Result<()> {
    for host in hosts {
        for partition in Partition::ALL {
            for (key, value) in control.storage(host).dump(partition) {
                for secret in secrets {
                    if contains(&value, secret.as_bytes()) || key.contains(secret.as_str()) {
                        bail!(
                            "{host} stores a secret in clear in the {} partition at {key}",
                            partition.name()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Fails when any trace line contains one of `secrets`.
pub fn no_secret_in_trace(trace: &Trace, secrets: &[String]) -> anyhow::Result<()> {
    for line in trace.lines() {
        for secret in secrets {
            if line.contains(secret.as_str()) {
                bail!(
                    "a log line contains a secret in clear: {}",
                    line.replace(secret.as_str(), "<secret>")
                );
            }
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// Fails when a secondary contains any of the primary's token entries (by their salted keys)
/// or the primary's token salt, because tokens are local state that stays on its cluster.
pub fn no_local_state_replicated(
    control: &Control,
    primary: &str,
    secondaries: &[String],
) -> anyhow::Result<()> {
    let primary_local = control.storage(primary).dump(Partition::Local);
    let token_keys: Vec<&String> = primary_local
        .iter()
        .map(|(key, _)| key)
        .filter(|key| key.starts_with("token/id/") || key.starts_with("token/accessor/"))
        .collect();
    let salt = primary_local
        .iter()
        .find(|(key, _)| key == "token/salt")
        .map(|(_, value)| value.clone());
    for host in secondaries {
        for partition in Partition::ALL {
            for (key, value) in control.storage(host).dump(partition) {
                if token_keys.contains(&&key) {
                    bail!("{host} contains the primary's token entry {key}");
                }
                if let Some(salt) = &salt {
                    if contains(&value, salt) {
                        bail!("{host} contains the primary's token salt at {key}");
                    }
                }
            }
        }
    }
    Ok(())
}
