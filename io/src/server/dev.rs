//! `coffer server --dev`: initialise, unseal and prepare a throwaway node through the same API
//! requests a client would send.

use coffer_core::error::Error;
use coffer_core::request::{Operation, Request, Response, Secret};
use coffer_core::storage::Storage;
use serde_json::{Value, json};

use super::environment::Environment;
use super::node::Node;

/// Options of dev mode.
#[derive(Clone, Debug, Default)]
pub struct DevOptions {
    /// The id to give the root token instead of a random one.
    pub root_token_id: Option<Secret>,
}

/// The secrets dev mode prints for the operator.
#[derive(Debug)]
pub struct DevCredentials {
    /// The single unseal key, base64.
    pub unseal_key: Secret,
    /// The root token.
    pub root_token: Secret,
}

/// An error from dev mode's setup requests.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A setup request failed.
    #[error("dev mode setup failed at {step}: {error}")]
    Request {
        /// The request path.
        step: &'static str,
        /// The error the node returned.
        error: Error,
    },
    /// A setup response lacked a field.
    #[error("dev mode setup failed at {step}: the response has no {field}")]
    Missing {
        /// The request path.
        step: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A state was not reached in time.
    #[error("dev mode setup failed at {step}: not done after {waited:?}; the state is {last}")]
    Timeout {
        /// The request path polled.
        step: &'static str,
        /// How long it waited.
        waited: std::time::Duration,
        /// The last state seen.
        last: String,
    },
}

/// Initialises the node with one key share, unseals it, mounts KV v2 at `secret/` and, when
/// asked, creates a root token with the chosen id.
pub async fn setup<S, E>(
    node: &Node<S, E>,
    options: &DevOptions,
) -> Result<DevCredentials, DevError>
where
    S: Storage + 'static,
    E: Environment,
{
    let init = json!({"secret_shares": 1, "secret_threshold": 1});
    let body = call(node, "sys/init", init, None).await?;
    let unseal_key = first_key(&body).ok_or(DevError::Missing {
        step: "sys/init",
        field: "keys_base64",
    })?;
    let mut root_token = string_field(&body, "root_token").ok_or(DevError::Missing {
        step: "sys/init",
        field: "root_token",
    })?;

    call(
        node,
        "sys/unseal",
        json!({"key": unseal_key.expose()}),
        None,
    )
    .await?;
    let mount = json!({"type": "kv", "options": {"version": "2"}});
    call(node, "sys/mounts/secret", mount, Some(&root_token)).await?;

    if let Some(id) = &options.root_token_id {
        let create = json!({"id": id.expose(), "policies": ["root"], "no_parent": true});
        call(node, "auth/token/create", create, Some(&root_token)).await?;
        // The generated root token is never printed, so it must not stay valid either.
        call(node, "auth/token/revoke-self", json!({}), Some(&root_token)).await?;
        root_token = id.clone();
    }
    Ok(DevCredentials {
        unseal_key,
        root_token,
    })
}

/// Sends one update request to `node` and returns its data, as a client would see it.
pub(super) async fn call<S, E>(
    node: &Node<S, E>,
    step: &'static str,
    data: Value,
    token: Option<&Secret>,
) -> Result<Value, DevError>
where
    S: Storage + 'static,
    E: Environment,
{
    let mut request = Request::new(Operation::Update, step).with_data(data);
    request.token = token.cloned();
    let executed = node.execute(request).await;
    match executed.result {
        Ok(Response::Raw { body, .. }) => Ok(body),
        Ok(Response::Logical(logical)) => Ok(logical.data.map(Value::Object).unwrap_or_default()),
        Ok(Response::NoContent) => Ok(Value::Null),
        Err(error) => Err(DevError::Request { step, error }),
    }
}

fn first_key(body: &Value) -> Option<Secret> {
    ["keys_base64", "keys"].iter().find_map(|field| {
        body.get(field)?
            .as_array()?
            .first()?
            .as_str()
            .map(Secret::new)
    })
}

fn string_field(body: &Value, field: &str) -> Option<Secret> {
    body.get(field)?.as_str().map(Secret::new)
}

/// Prints the address, the unseal key and the root token in one block on stdout.
pub fn print_banner(address: &str, credentials: &DevCredentials) {
    let banner = format!(
        "==> Coffer server started in development mode.\n\
         \n\
         \x20   WARNING: dev mode keeps its data in a temporary directory that is removed on\n\
         \x20   exit, and prints its secrets below. Do not run it in production.\n\
         \n\
         \x20   Api Address: {address}\n\
         \x20   Unseal Key: {}\n\
         \x20   Root Token: {}\n\
         \n\
         \x20   export VAULT_ADDR='{address}'\n",
        credentials.unseal_key.expose(),
        credentials.root_token.expose(),
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
    fn first_key_prefers_base64() {
        let body = json!({"keys": ["hex"], "keys_base64": ["b64"], "root_token": "r"});
        assert_eq!(first_key(&body).unwrap().expose(), "b64");
        let hex_only = json!({"keys": ["hex"]});
        assert_eq!(first_key(&hex_only).unwrap().expose(), "hex");
        assert!(first_key(&json!({})).is_none());
    }
}
