//! Bringing up a replica set through the Vault API from a scenario: initialise and unseal the
//! primary, enable replication, activate each secondary and give it a root token.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use coffer_core::replication::merkle::Merkle;
use coffer_core::replication::wal::Wal;
use coffer_core::storage::Storage;
use serde_json::{Value, json};

use crate::client::{ApiClient, ApiResponse};
use crate::harness::{Control, PRIMARY};

/// How often a wait polls.
const POLL: Duration = Duration::from_millis(100);

/// The credentials of a running replica set: the unseal keys and root tokens.
#[derive(Clone, Debug)]
pub struct ReplicaSet {
    /// The primary's unseal keys, which also unseal the activated secondaries.
    pub keys: Vec<String>,
    /// The primary's root token.
    pub root: String,
    /// Each secondary's root token, generated with the primary's keys.
    pub secondary_roots: BTreeMap<String, String>,
    /// The activation token each secondary was activated with, used up since.
    pub used_tokens: BTreeMap<String, String>,
}

impl ReplicaSet {
    /// Initialises the primary, enables replication on it and activates every secondary.
    pub async fn establish(control: &Control) -> anyhow::Result<ReplicaSet> {
        let primary = control.api(PRIMARY);
        let (keys, root) = init_and_unseal(&primary).await?;
        let enabled = primary
            .with_token(&root)
            .post("sys/replication/performance/primary/enable", &json!({}))
            .await?;
        expect_ok(&enabled, "primary/enable")?;
        let mut set = ReplicaSet {
            keys,
            root,
            secondary_roots: BTreeMap::new(),
            used_tokens: BTreeMap::new(),
        };
        for host in control.secondaries() {
            set.activate(control, &host).await?;
        }
        Ok(set)
    }

    /// Activates `host` as a secondary with id `host`, waits until it streams and generates
    /// its root token.
    pub async fn activate(&mut self, control: &Control, host: &str) -> anyhow::Result<()> {
        let secondary = control.api(host);
        let (_, own_root) = init_and_unseal(&secondary).await?;
        let token = self.secondary_token(control, host).await?;
        let enabled = activate(control, host, &own_root, &token).await?;
        expect_ok(&enabled, &format!("secondary/enable on {host}"))?;
        wait_for_state(&secondary, "stream-wals", Duration::from_secs(60)).await?;
        let root = generate_root(&secondary, &self.keys).await?;
        self.secondary_roots.insert(host.to_owned(), root);
        self.used_tokens.insert(host.to_owned(), token);
        Ok(())
    }

    /// Issues an activation token for secondary id `id` on the primary.
    pub async fn secondary_token(&self, control: &Control, id: &str) -> anyhow::Result<String> {
        let response = control
            .api(PRIMARY)
            .with_token(&self.root)
            .post(
                "sys/replication/performance/primary/secondary-token",
                &json!({ "id": id }),
            )
            .await?;
        expect_ok(&response, "secondary-token")?;
        response.body["wrap_info"]["token"]
            .as_str()
            .map(str::to_owned)
            .context("secondary-token returned no wrap_info.token")
    }

    /// Returns a root-token client of `host`.
    pub fn root_api(&self, control: &Control, host: &str) -> ApiClient {
        let token = self
            .secondary_roots
            .get(host)
            .map_or(self.root.as_str(), String::as_str);
        control.api(host).with_token(token)
    }

    /// Unseals `host` with the primary's keys, retrying until its API responds.
    pub async fn unseal(&self, control: &Control, host: &str) -> anyhow::Result<()> {
        let api = control.api(host);
        for _ in 0..100 {
            if let Ok(status) = api.get("sys/seal-status").await {
                if status.body["sealed"] == Value::Bool(false) {
                    return Ok(());
                }
                for key in &self.keys {
                    let _ = api.post("sys/unseal", &json!({ "key": key })).await;
                }
                continue;
            }
            tokio::time::sleep(POLL).await;
        }
        bail!("{host} could not be unsealed")
    }
}

/// Sends `secondary/enable` with `token` to `host`, trusting the API certificate.
pub async fn activate(
    control: &Control,
    host: &str,
    own_root: &str,
    token: &str,
) -> anyhow::Result<ApiResponse> {
    control
        .api(host)
        .with_token(own_root)
        .post(
            "sys/replication/performance/secondary/enable",
            &json!({ "token": token, "ca_file": control.api_ca_file() }),
        )
        .await
}

/// Initialises `api`'s node with one key share, unseals it and returns the keys and root
/// token.
pub async fn init_and_unseal(api: &ApiClient) -> anyhow::Result<(Vec<String>, String)> {
    let init = retry_until_reachable(
        api,
        "sys/init",
        &json!({"secret_shares": 1, "secret_threshold": 1}),
    )
    .await?;
    expect_ok(&init, "sys/init")?;
    let key = init.body["keys"][0]
        .as_str()
        .context("sys/init returned no key")?
        .to_owned();
    let root = init.body["root_token"]
        .as_str()
        .context("sys/init returned no root_token")?
        .to_owned();
    let unsealed = api.post("sys/unseal", &json!({ "key": key })).await?;
    expect_ok(&unsealed, "sys/unseal")?;
    Ok((vec![key], root))
}

/// Posts until the node responds at all, because a node may still be binding its listener.
async fn retry_until_reachable(
    api: &ApiClient,
    path: &str,
    body: &Value,
) -> anyhow::Result<ApiResponse> {
    let mut last = None;
    for _ in 0..50 {
        match api.post(path, body).await {
            Ok(response) => return Ok(response),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{path} was never sent")))
}

/// Mounts the KV version 1 engine at `app/` through `api`; the scenarios write their keys there.
pub async fn mount_app(api: &ApiClient) -> anyhow::Result<()> {
    let mounted = api.post("sys/mounts/app", &json!({"type": "kv"})).await?;
    expect_ok(&mounted, "mounting app/")
}

/// Fails unless `response` has a 2xx status.
pub fn expect_ok(response: &ApiResponse, what: &str) -> anyhow::Result<()> {
    if (200..300).contains(&response.status) {
        return Ok(());
    }
    bail!(
        "{what} failed with {}: {}",
        response.status,
        if response.errors().is_empty() {
            response.body.to_string()
        } else {
            response.errors()
        }
    )
}

/// Returns `sys/replication/performance/status` of `api`'s node.
pub async fn performance_status(api: &ApiClient) -> anyhow::Result<Value> {
    let response = api.get("sys/replication/performance/status").await?;
    expect_ok(&response, "replication status")?;
    Ok(response.body["data"].clone())
}

/// Waits until the replication `state` of `api`'s node is `state`.
pub async fn wait_for_state(api: &ApiClient, state: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Ok(status) = performance_status(api).await {
            if status["state"] == state {
                return Ok(());
            }
            last = status;
        }
        tokio::time::sleep(POLL).await;
    }
    bail!(
        "{} never reached state {state} within {timeout:?}; last status: {last}",
        api.host()
    )
}

/// Generates a root token on `api`'s node with `keys` through `sys/generate-root`.
pub async fn generate_root(api: &ApiClient, keys: &[String]) -> anyhow::Result<String> {
    let started = api.post("sys/generate-root/attempt", &json!({})).await?;
    expect_ok(&started, "generate-root/attempt")?;
    let otp = started.body["otp"]
        .as_str()
        .context("generate-root returned no otp")?
        .to_owned();
    let nonce = started.body["nonce"]
        .as_str()
        .context("generate-root returned no nonce")?
        .to_owned();
    for key in keys {
        let update = api
            .post(
                "sys/generate-root/update",
                &json!({ "key": key, "nonce": nonce }),
            )
            .await?;
        expect_ok(&update, "generate-root/update")?;
        if update.body["complete"] == true {
            let encoded = update.body["encoded_token"]
                .as_str()
                .context("generate-root completed without encoded_token")?;
            let bytes = STANDARD_NO_PAD
                .decode(encoded.trim_end_matches('='))
                .context("encoded_token is not base64")?;
            let token: Vec<u8> = bytes
                .iter()
                .zip(otp.as_bytes())
                .map(|(byte, pad)| byte ^ pad)
                .collect();
            return String::from_utf8(token).context("the decoded root token is not UTF-8");
        }
    }
    bail!("generate-root did not complete with {} keys", keys.len())
}

/// Returns the Merkle root and WAL head index of `host`'s committed storage.
pub fn merkle_state(control: &Control, host: &str) -> anyhow::Result<(String, u64)> {
    let (root, head) = control
        .storage(host)
        .read(|txn| (Merkle::root(txn), Wal::head(txn)))?;
    Ok((hex::encode(root?), head?.index))
}

/// Waits until every secondary's Merkle root equals the primary's, and fails after `bound`.
pub async fn wait_converged(control: &Control, bound: Duration) -> anyhow::Result<Duration> {
    wait_hosts_converged(control, &control.secondaries(), bound).await
}

/// Waits until the Merkle root of each of `hosts` equals the primary's, and fails after
/// `bound`. Returns how long it took.
pub async fn wait_hosts_converged(
    control: &Control,
    hosts: &[String],
    bound: Duration,
) -> anyhow::Result<Duration> {
    wait_converged_to(control, PRIMARY, hosts, bound).await
}

/// Waits until the Merkle root of each of `hosts` equals that of `leader`, the current
/// primary, and fails after `bound`. Returns how long it took.
pub async fn wait_converged_to(
    control: &Control,
    leader: &str,
    hosts: &[String],
    bound: Duration,
) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        let (primary, index) = merkle_state(control, leader)?;
        let mut behind = Vec::new();
        for host in hosts {
            let (root, head) = merkle_state(control, host)?;
            if root != primary {
                behind.push(format!("{host} at index {head} root {}", &root[..12]));
            }
        }
        if behind.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > bound {
            bail!(
                "secondaries did not reach the Merkle root {} (index {index}) of {leader} \
                 within {bound:?}: {}",
                &primary[..12],
                behind.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
