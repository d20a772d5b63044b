//! The userpass auth method: named users with an Argon2id password hash and token settings.
//!
//! Layout below the mount's prefix: `user/<name>`, a [`UserEntry`]. User names are lowercased.

mod password;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Mount;
use super::fields::check_name;
use super::token_fields::TokenFields;
use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Logical, Operation, Request, Response, Secret};
use crate::storage::Transaction;

/// The one message for a wrong user name and a wrong password, so that a client cannot
/// distinguish them.
const INVALID_CREDENTIALS: &str = "invalid username or password";

/// A stored user.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct UserEntry {
    /// The PHC string of the password's Argon2id hash.
    password_hash: String,
    #[serde(flatten)]
    token: TokenFields,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("password_hash", &"..")
            .field("token", &self.token)
            .finish()
    }
}

/// Serves `auth/<mount>/<rest>` of a userpass mount.
pub(crate) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    rest: &str,
    mount: &Mount,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    use Operation::{Delete, List, Read, Update};
    let now = ctx.now;
    let mut view = core.barrier.view(txn, ctx.rng)?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match (request.operation, segments.as_slice()) {
        (List, ["users"]) => list(mount, &view),
        (Read, ["users", name]) => read(mount, &view, name),
        (Update, ["users", name]) => write(mount, &mut view, name, &request.data),
        (Delete, ["users", name]) => delete(mount, &mut view, name),
        (Update, ["users", name, "password"]) => change_password(mount, &mut view, name, request),
        (Update, ["users", name, "policies"]) => change_policies(mount, &mut view, name, request),
        (Update, ["login", name]) => login(core, mount, &mut view, now, name, request),
        (_, ["users"] | ["users", _] | ["users", _, "password" | "policies"] | ["login", _]) => {
            Err(Error::unsupported_operation())
        }
        _ => Err(Error::no_handler(&request.path)),
    }
}

/// Returns the key whose presence decides whether a write to `rest` creates or updates a user.
pub(crate) fn existence_key(mount: &Mount, rest: &str) -> Option<String> {
    match rest
        .trim_end_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["users", name] => Some(user_key(mount, &name.to_lowercase())),
        _ => None,
    }
}

fn user_key(mount: &Mount, name: &str) -> String {
    mount.location.key(&format!("user/{name}"))
}

fn load(mount: &Mount, view: &SecureView<'_>, name: &str) -> Result<Option<UserEntry>, Error> {
    view.get_json(mount.location.partition, &user_key(mount, name))
}

fn save(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    entry: &UserEntry,
) -> Result<(), Error> {
    view.put_json(mount.location.partition, &user_key(mount, name), entry)
}

fn list(mount: &Mount, view: &SecureView<'_>) -> Result<Response, Error> {
    let keys = view.list(mount.location.partition, &mount.location.key("user/"))?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

fn read(mount: &Mount, view: &SecureView<'_>, name: &str) -> Result<Response, Error> {
    let Some(entry) = load(mount, view, &name.to_lowercase())? else {
        return Err(Error::not_found());
    };
    let mut data = Map::new();
    entry.token.write_json(&mut data);
    Ok(Response::data(data))
}

/// Creates or updates a user. Creating one needs a password; an update keeps the stored hash
/// unless the request carries a new password.
fn write(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    check_name("user", &name)?;
    if data.contains_key("password_hash") {
        return Err(Error::bad_request(
            "password_hash is not supported by this server: send the password in \"password\"",
        ));
    }
    let existing = load(mount, view, &name)?;
    let password = password_field(data)?;
    if existing.is_none() && password.is_none() {
        return Err(Error::bad_request(format!(
            "missing password: creating user {name:?} needs a \"password\""
        )));
    }
    let mut entry = existing.unwrap_or_default();
    entry.token.update(data)?;
    if let Some(password) = password {
        entry.password_hash = password::hash(&password, view.rng())?;
    }
    save(mount, view, &name, &entry)?;
    Ok(Response::NoContent)
}

fn delete(mount: &Mount, view: &mut SecureView<'_>, name: &str) -> Result<Response, Error> {
    view.delete(
        mount.location.partition,
        &user_key(mount, &name.to_lowercase()),
    )?;
    Ok(Response::NoContent)
}

fn change_password(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    request: &Request,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    let mut entry = existing_user(mount, view, &name)?;
    let Some(password) = password_field(&request.data)? else {
        return Err(Error::bad_request("missing password"));
    };
    entry.password_hash = password::hash(&password, view.rng())?;
    save(mount, view, &name, &entry)?;
    Ok(Response::NoContent)
}

fn change_policies(
    mount: &Mount,
    view: &mut SecureView<'_>,
    name: &str,
    request: &Request,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    let mut entry = existing_user(mount, view, &name)?;
    let policies: Map<String, Value> = request
        .data
        .iter()
        .filter(|(key, _)| *key == "token_policies" || *key == "policies")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    entry.token.update(&policies)?;
    save(mount, view, &name, &entry)?;
    Ok(Response::NoContent)
}

fn existing_user(mount: &Mount, view: &SecureView<'_>, name: &str) -> Result<UserEntry, Error> {
    load(mount, view, name)?
        .ok_or_else(|| Error::bad_request(format!("user {name:?} does not exist")))
}

/// Checks the password and issues a token with the user's settings.
fn login(
    core: &Core,
    mount: &Mount,
    view: &mut SecureView<'_>,
    now: crate::time::Timestamp,
    name: &str,
    request: &Request,
) -> Result<Response, Error> {
    let name = name.to_lowercase();
    let Some(password) = password_field(&request.data)? else {
        return Err(Error::bad_request("missing password"));
    };
    let entry = load(mount, view, &name)?;
    let stored = entry.as_ref().map(|entry| entry.password_hash.as_str());
    if !password::verify(&password, stored)? {
        return Err(Error::bad_request(INVALID_CREDENTIALS));
    }
    let Some(entry) = entry else {
        return Err(Error::bad_request(INVALID_CREDENTIALS));
    };
    let meta = BTreeMap::from([(String::from("username"), name.clone())]);
    let params = entry.token.token_params(
        mount,
        format!("{}{name}", mount.display_prefix()),
        format!("{}login/{name}", mount.request_prefix()),
        meta,
    )?;
    let auth = crate::token::issue_token(core, view, now, &params)?;
    Ok(Response::logical(Logical {
        status: 200,
        auth: Some(auth),
        ..Logical::default()
    }))
}

/// The `password` field as a secret; `None` when absent. An empty password is rejected.
fn password_field(data: &Map<String, Value>) -> Result<Option<Secret>, Error> {
    match data.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(Error::bad_request(
            "missing password: the password must not be empty",
        )),
        Some(Value::String(text)) => Ok(Some(Secret::new(text.as_str()))),
        Some(_) => Err(Error::bad_request(
            "invalid value for password: expected a string",
        )),
    }
}

#[cfg(test)]
mod tests;
