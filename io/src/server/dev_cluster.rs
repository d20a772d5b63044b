//! `coffer server --dev-cluster`: a primary and one secondary in one process, each on its own
//! LMDB directory, joined the way an operator joins real clusters: an activation token from the
//! primary, `secondary/enable` on the secondary over the real cluster port, and a root token
//! on the secondary generated with the primary's unseal key.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use coffer_core::request::{Operation, Request, Response, Secret};
use coffer_core::storage::Storage;
use serde_json::{Value, json};

use super::dev::{DevCredentials, DevError, call};
use super::environment::Environment;
use super::node::Node;

/// The secondary's id in the dev replication set.
pub const SECONDARY_ID: &str = "dev-secondary";

/// How long the secondary may take to reach `stream-wals` after activation.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The four addresses of a dev cluster, derived from the primary's API address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevClusterAddresses {
    /// The primary's API listener.
    pub primary_api: SocketAddr,
    /// The primary's cluster listener.
    pub primary_cluster: SocketAddr,
    /// The secondary's API listener.
    pub secondary_api: SocketAddr,
    /// The secondary's cluster listener.
    pub secondary_cluster: SocketAddr,
}

impl DevClusterAddresses {
    /// Uses `primary_api` and the next three ports.
    pub fn from_primary(primary_api: SocketAddr) -> Result<DevClusterAddresses, String> {
        let port = |offset: u16| {
            primary_api.port().checked_add(offset).ok_or_else(|| {
                format!(
                    "--dev-listen-address {primary_api} leaves no room for the three ports \
                     after it; choose a port below 65533"
                )
            })
        };
        let with_port = |port: u16| SocketAddr::new(primary_api.ip(), port);
        Ok(DevClusterAddresses {
            primary_api,
            primary_cluster: with_port(port(1)?),
            secondary_api: with_port(port(2)?),
            secondary_cluster: with_port(port(3)?),
        })
    }
}

/// What `--dev-cluster` prints once the secondary streams.
#[derive(Debug)]
pub struct DevClusterCredentials {
    /// The primary's unseal key and root token, which also unseal the secondary.
    pub primary: DevCredentials,
    /// The root token generated on the secondary with the primary's unseal key.
    pub secondary_root_token: Secret,
}

/// Enables replication on `primary`, activates `secondary` with a fresh activation token,
/// waits until it streams, and generates a root token on it with the primary's unseal key.
pub async fn join<S1, S2, E>(
    primary: &Node<S1, E>,
    primary_credentials: DevCredentials,
    secondary: &Node<S2, E>,
    secondary_credentials: &DevCredentials,
) -> Result<DevClusterCredentials, DevError>
where
    S1: Storage + 'static,
    S2: Storage + 'static,
    E: Environment,
{
    let root = &primary_credentials.root_token;
    let enable = "sys/replication/performance/primary/enable";
    call(primary, enable, json!({}), Some(root)).await?;
    let token = activation_token(primary, root).await?;
    let activate = "sys/replication/performance/secondary/enable";
    call(
        secondary,
        activate,
        json!({ "token": token.expose() }),
        Some(&secondary_credentials.root_token),
    )
    .await?;
    wait_for_stream(secondary).await?;
    let secondary_root_token = generate_root(secondary, &primary_credentials.unseal_key).await?;
    Ok(DevClusterCredentials {
        primary: primary_credentials,
        secondary_root_token,
    })
}

async fn activation_token<S, E>(primary: &Node<S, E>, root: &Secret) -> Result<Secret, DevError>
where
    S: Storage + 'static,
    E: Environment,
{
    let step = "sys/replication/performance/primary/secondary-token";
    let request = Request::new(Operation::Update, step)
        .with_data(json!({ "id": SECONDARY_ID }))
        .with_token(root.expose());
    match primary.execute(request).await.result {
        Ok(Response::Logical(logical)) => {
            logical
                .wrap_info
                .map(|wrap| wrap.token)
                .ok_or(DevError::Missing {
                    step,
                    field: "wrap_info.token",
                })
        }
        Ok(_) => Err(DevError::Missing {
            step,
            field: "wrap_info.token",
        }),
        Err(error) => Err(DevError::Request { step, error }),
    }
}

async fn wait_for_stream<S, E>(secondary: &Node<S, E>) -> Result<(), DevError>
where
    S: Storage + 'static,
    E: Environment,
{
    let step = "sys/replication/performance/status";
    let deadline = tokio::time::Instant::now() + STREAM_TIMEOUT;
    loop {
        let request = Request::new(Operation::Read, step);
        let state = match secondary.execute(request).await.result {
            Ok(Response::Logical(logical)) => logical
                .data
                .and_then(|data| data.get("state").and_then(Value::as_str).map(str::to_owned)),
            _ => None,
        };
        if state.as_deref() == Some("stream-wals") {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DevError::Timeout {
                step,
                waited: STREAM_TIMEOUT,
                last: state.unwrap_or_else(|| "unknown".to_owned()),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn generate_root<S, E>(node: &Node<S, E>, unseal_key: &Secret) -> Result<Secret, DevError>
where
    S: Storage + 'static,
    E: Environment,
{
    let attempt = call(node, "sys/generate-root/attempt", json!({}), None).await?;
    let missing = |field| DevError::Missing {
        step: "sys/generate-root/attempt",
        field,
    };
    let otp = attempt
        .get("otp")
        .and_then(Value::as_str)
        .map(Secret::new)
        .ok_or_else(|| missing("otp"))?;
    let nonce = attempt
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("nonce"))?
        .to_owned();
    let update = json!({ "key": unseal_key.expose(), "nonce": nonce });
    let done = call(node, "sys/generate-root/update", update, None).await?;
    let encoded = done
        .get("encoded_token")
        .and_then(Value::as_str)
        .ok_or(DevError::Missing {
            step: "sys/generate-root/update",
            field: "encoded_token",
        })?;
    decode_root_token(encoded, &otp).ok_or(DevError::Missing {
        step: "sys/generate-root/update",
        field: "a decodable encoded_token",
    })
}

/// XORs the base64 `encoded` token with `otp`, as `vault operator generate-root -decode` does.
fn decode_root_token(encoded: &str, otp: &Secret) -> Option<Secret> {
    let padded = match encoded.len() % 4 {
        2 => format!("{encoded}=="),
        3 => format!("{encoded}="),
        _ => encoded.to_owned(),
    };
    let bytes = STANDARD.decode(padded).ok()?;
    let otp = otp.expose().as_bytes();
    if bytes.len() != otp.len() {
        return None;
    }
    let token: Vec<u8> = bytes
        .iter()
        .zip(otp)
        .map(|(byte, pad)| byte ^ pad)
        .collect();
    String::from_utf8(token).ok().map(Secret::new)
}

/// Prints both addresses, the primary's unseal key, both root tokens and commands to try.
pub fn print_banner(addresses: &DevClusterAddresses, credentials: &DevClusterCredentials) {
    let primary = format!("http://{}", addresses.primary_api);
    let secondary = format!("http://{}", addresses.secondary_api);
    let primary_root = credentials.primary.root_token.expose();
    let secondary_root = credentials.secondary_root_token.expose();
    let banner = format!(
        "==> Coffer replication started in development mode: a primary and one secondary.\n\
         \n\
         \x20   WARNING: dev mode keeps its data in a temporary directory that is removed on\n\
         \x20   exit, and prints its secrets below. Do not run it in production.\n\
         \n\
         \x20   Primary Api Address:   {primary}  (cluster port {primary_cluster})\n\
         \x20   Secondary Api Address: {secondary}  (cluster port {secondary_cluster}, id {SECONDARY_ID})\n\
         \x20   Unseal Key (both):     {unseal}\n\
         \x20   Primary Root Token:    {primary_root}\n\
         \x20   Secondary Root Token:  {secondary_root}\n\
         \n\
         Try:\n\
         \x20   VAULT_ADDR={primary} VAULT_TOKEN={primary_root} cargo run --release -- kv put secret/hello value=world\n\
         \x20   VAULT_ADDR={secondary} VAULT_TOKEN={secondary_root} cargo run --release -- kv get secret/hello\n\
         \x20   curl -s {secondary}/v1/sys/replication/performance/status\n",
        primary_cluster = addresses.primary_cluster,
        secondary_cluster = addresses.secondary_cluster,
        unseal = credentials.primary.unseal_key.expose(),
    );
    #[allow(clippy::print_stdout)]
    {
        println!("{banner}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_the_three_ports_after_the_primary() {
        let addresses = DevClusterAddresses::from_primary("127.0.0.1:8200".parse().unwrap());
        let addresses = addresses.unwrap();
        assert_eq!(addresses.primary_cluster.port(), 8201);
        assert_eq!(addresses.secondary_api.port(), 8202);
        assert_eq!(addresses.secondary_cluster.port(), 8203);
    }

    #[test]
    fn addresses_at_the_top_of_the_port_range_are_refused() {
        let error = DevClusterAddresses::from_primary("127.0.0.1:65534".parse().unwrap());
        assert!(error.unwrap_err().contains("below 65533"));
    }

    #[test]
    fn root_token_decodes_with_its_otp() {
        let otp = Secret::new("abcd");
        let token = b"hvs.";
        let xored: Vec<u8> = token.iter().zip(b"abcd").map(|(a, b)| a ^ b).collect();
        let encoded = STANDARD.encode(xored);
        let decoded = decode_root_token(encoded.trim_end_matches('='), &otp).unwrap();
        assert_eq!(decoded.expose(), "hvs.");
    }
}
