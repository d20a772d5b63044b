//! A replication set of real processes: one primary and its secondaries, activated through the
//! API with real activation tokens over the real cluster port.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Value, json};

use crate::api::ApiResponse;
use crate::config::ServerOptions;
use crate::server::{InitKeys, Server};

/// How long a secondary may take to reach `stream-wals` after activation or a restart.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// A primary and its activated secondaries.
pub struct ReplicaSet {
    /// The primary.
    pub primary: Server,
    /// The primary's unseal keys and root token, which also unseal every secondary.
    pub keys: InitKeys,
    /// The secondaries in activation order.
    pub secondaries: Vec<Secondary>,
    options: ServerOptions,
}

/// One activated secondary.
pub struct Secondary {
    /// The process.
    pub server: Server,
    /// Its id in the replication set.
    pub id: String,
    /// A root token generated on it with the primary's unseal keys.
    pub root_token: String,
}

impl ReplicaSet {
    /// Starts a primary and `count` secondaries named `s1`, `s2`, ..., activates each and waits
    /// until all of them stream.
    pub fn start(count: usize) -> anyhow::Result<ReplicaSet> {
        ReplicaSet::start_with(count, &ServerOptions::default())
    }

    /// Like [`ReplicaSet::start`], with `options` for every server.
    pub fn start_with(count: usize, options: &ServerOptions) -> anyhow::Result<ReplicaSet> {
        let primary = Server::start_with(options.clone())?;
        let keys = primary.init_and_unseal()?;
        enable_primary(&primary, &keys.root_token)?;
        let mut set = ReplicaSet {
            primary,
            keys,
            secondaries: Vec::new(),
            options: options.clone(),
        };
        for number in 1..=count {
            set.add_secondary(&format!("s{number}"))?;
        }
        Ok(set)
    }

    /// Starts a new server and activates it as secondary `id`.
    pub fn add_secondary(&mut self, id: &str) -> anyhow::Result<()> {
        let server = Server::start_with(self.options.clone())?;
        let own = server.init_and_unseal()?;
        let token = secondary_token(&self.primary, &self.keys.root_token, id)?;
        activate(&server, &own.root_token, &token)?.expect_status(200)?;
        wait_for_state(&server, "stream-wals", CONVERGE_TIMEOUT)?;
        let root_token = generate_root(&server, &self.keys.keys)?;
        self.secondaries.push(Secondary {
            server,
            id: id.to_owned(),
            root_token,
        });
        Ok(())
    }

    /// Returns the primary's root token.
    pub fn root(&self) -> &str {
        &self.keys.root_token
    }

    /// Waits until every secondary streams at the primary's last WAL index.
    pub fn wait_converged(&self) -> anyhow::Result<()> {
        for secondary in &self.secondaries {
            wait_caught_up(&secondary.server, &self.primary)
                .with_context(|| format!("secondary {} did not catch up", secondary.id))?;
        }
        Ok(())
    }
}

/// Enables performance replication on `primary`.
pub fn enable_primary(primary: &Server, root: &str) -> anyhow::Result<()> {
    primary
        .api(root)?
        .post("sys/replication/performance/primary/enable", &json!({}))?
        .expect_status(200)
}

/// Issues an activation token for secondary `id` and returns the JWT from `wrap_info.token`.
pub fn secondary_token(primary: &Server, root: &str, id: &str) -> anyhow::Result<String> {
    let response = primary.api(root)?.post(
        "sys/replication/performance/primary/secondary-token",
        &json!({ "id": id }),
    )?;
    response.expect_status(200)?;
    response.body["wrap_info"]["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "secondary-token returned no wrap_info.token: {}",
                response.body
            )
        })
}

/// Sends `secondary/enable` with `token` to `secondary` and returns the raw response.
pub fn activate(secondary: &Server, root: &str, token: &str) -> anyhow::Result<ApiResponse> {
    secondary.api(root)?.post(
        "sys/replication/performance/secondary/enable",
        &json!({ "token": token }),
    )
}

/// Returns `sys/replication/performance/status` of `server`.
pub fn performance_status(server: &Server) -> anyhow::Result<Value> {
    let response = server.api("")?.get("sys/replication/performance/status")?;
    response.expect_status(200)?;
    Ok(response.body["data"].clone())
}

/// Returns the primary's `last_wal`.
pub fn last_wal(primary: &Server) -> anyhow::Result<u64> {
    performance_status(primary)?["last_wal"]
        .as_u64()
        .context("the primary's status has no last_wal")
}

/// Waits until the performance `state` of `server` is `state`.
pub fn wait_for_state(server: &Server, state: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until(
        timeout,
        || Ok(performance_status(server)?["state"] == state),
    )
    .with_context(|| {
        let status = performance_status(server).unwrap_or(Value::Null);
        format!("the state never became {state}; last status: {status}")
    })
}

/// Polls `check` every 50 ms until it returns true; fails after `timeout`.
pub fn wait_until(
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match last_error {
        Some(error) => Err(error.context(format!("timed out after {timeout:?}"))),
        None => bail!("timed out after {timeout:?}"),
    }
}

/// Generates a root token on `server` with `keys` through `sys/generate-root`.
pub fn generate_root(server: &Server, keys: &[String]) -> anyhow::Result<String> {
    let api = server.api("")?;
    let started = api.put("sys/generate-root/attempt", &json!({}))?;
    started.expect_status(200)?;
    let otp = started.body["otp"]
        .as_str()
        .context("generate-root returned no otp")?
        .to_owned();
    let nonce = started.body["nonce"]
        .as_str()
        .context("generate-root returned no nonce")?
        .to_owned();
    for key in keys {
        let update = api.put(
            "sys/generate-root/update",
            &json!({ "key": key, "nonce": nonce }),
        )?;
        update.expect_status(200)?;
        if update.body["complete"] == true {
            let encoded = update.body["encoded_token"]
                .as_str()
                .context("generate-root completed without encoded_token")?;
            return decode_root_token(encoded, &otp);
        }
    }
    bail!("generate-root did not complete with {} keys", keys.len())
}

fn decode_root_token(encoded: &str, otp: &str) -> anyhow::Result<String> {
    let bytes = STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .context("encoded_token is not base64")?;
    let token: Vec<u8> = bytes
        .iter()
        .zip(otp.as_bytes())
        .map(|(byte, pad)| byte ^ pad)
        .collect();
    String::from_utf8(token).context("the decoded root token is not UTF-8")
}

/// Demotes the primary `server` and returns the response's `data`.
pub fn demote(server: &Server, root: &str) -> anyhow::Result<Value> {
    let response = server
        .api(root)?
        .post("sys/replication/performance/primary/demote", &json!({}))?;
    response.expect_status(200)?;
    Ok(response.body["data"].clone())
}

/// Promotes the secondary `server` with `body` (`force`, `primary_cluster_addr`) and waits
/// until its status reports `mode` `primary`.
pub fn promote(server: &Server, root: &str, body: &Value) -> anyhow::Result<()> {
    server
        .api(root)?
        .post("sys/replication/performance/secondary/promote", body)?
        .expect_status(200)?;
    wait_until(CONVERGE_TIMEOUT, || {
        Ok(performance_status(server)?["mode"] == "primary")
    })
}

/// Sends `secondary/update-primary` with `token` to `server` and returns the raw response.
pub fn update_primary(server: &Server, root: &str, token: &str) -> anyhow::Result<ApiResponse> {
    server.api(root)?.post(
        "sys/replication/performance/secondary/update-primary",
        &json!({ "token": token }),
    )
}

/// Waits until `follower` streams from a primary whose `last_wal` is `primary`'s.
pub fn wait_caught_up(follower: &Server, primary: &Server) -> anyhow::Result<()> {
    let target = last_wal(primary)?;
    wait_until(CONVERGE_TIMEOUT, || {
        let status = performance_status(follower)?;
        Ok(status["state"] == "stream-wals" && status["last_remote_wal"].as_u64() >= Some(target))
    })
    .with_context(|| {
        let status = performance_status(follower).unwrap_or(Value::Null);
        format!("the follower did not reach WAL {target}; last status: {status}")
    })
}

/// Reads the `marker` field of the KV v2 secret `secret/<path>` on `server`, or `None` when the
/// secret does not exist.
pub fn read_marker(server: &Server, token: &str, path: &str) -> anyhow::Result<Option<String>> {
    let response = server.api(token)?.get(&format!("secret/data/{path}"))?;
    if response.status == 404 {
        return Ok(None);
    }
    response.expect_status(200)?;
    Ok(response.body["data"]["data"]["marker"]
        .as_str()
        .map(str::to_owned))
}
