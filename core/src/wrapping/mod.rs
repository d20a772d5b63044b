//! Response wrapping: a response kept in the cubbyhole of a single-use token, with only
//! `wrap_info` returned in its place.
//!
//! Every wrapping token is issued here, for `X-Vault-Wrap-TTL`, `sys/wrapping/wrap`,
//! `sys/wrapping/rewrap` and replication's activation bundles. Its cubbyhole holds, as Vault
//! keeps them:
//! - `cubbyhole/<hash>/response`: `{"response": "<the envelope as JSON text>"}`, which a
//!   legacy `GET cubbyhole/response` with the wrapping token still reads;
//! - `cubbyhole/<hash>/wrapinfo`: the TTL, time and path of creation, for `sys/wrapping/lookup`.
//!
//! Wrapping tokens and their cubbyholes live in the local partition and are encrypted by the
//! barrier: a wrapping token works only on the node that issued it.

mod envelope;

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub(crate) use envelope::WrappedResponse;

use crate::Core;
use crate::acl::RESPONSE_WRAPPING_POLICY;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Logical, Operation, Request, Response, Secret, WrapInfo};
use crate::storage::{Partition, Transaction};
use crate::time::{Timestamp, format_go_duration};
use crate::token::{TokenParams, issue_token, revoke_accessor, token_info};

/// Vault's message for a wrapping token that is unknown, spent, expired or not a wrapping token.
pub(crate) const INVALID_TOKEN: &str = "wrapping token is not valid or does not exist";

/// The shortest wrap TTL accepted: a wrapping token must outlive the response that carries it.
const MIN_TTL: Duration = Duration::from_secs(1);

/// Paths Vault serves outside its logical router, whose responses are never wrapped.
const UNWRAPPED_PATHS: &[&str] = &[
    "sys/init",
    "sys/seal-status",
    "sys/seal",
    "sys/unseal",
    "sys/leader",
    "sys/health",
    "sys/step-down",
    "sys/generate-root",
    "sys/rekey",
];

/// The path that wraps its response itself, with the wrapped token's own TTL and path.
const REWRAP_PATH: &str = "sys/wrapping/rewrap";

/// A wrapping token just issued, with its creation record already stored.
#[derive(Debug)]
pub(crate) struct WrappingToken {
    /// The token.
    pub(crate) token: Secret,
    /// Its accessor.
    pub(crate) accessor: String,
    /// Its salted hash, which names its cubbyhole.
    pub(crate) token_hash: String,
    /// Its creation record, which `sys/wrapping/lookup` returns.
    pub(crate) creation: Creation,
}

/// When, for how long and on which path a wrapping token was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Creation {
    /// The TTL in seconds.
    pub(crate) ttl: u64,
    /// The creation time.
    pub(crate) time: Timestamp,
    /// The path whose response the token wraps.
    pub(crate) path: String,
}

impl Creation {
    /// Builds the `data` of `sys/wrapping/lookup`.
    pub(crate) fn lookup_data(&self) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("creation_ttl".into(), json!(self.ttl));
        data.insert("creation_time".into(), json!(self.time.to_rfc3339()));
        data.insert("creation_path".into(), json!(self.path));
        data
    }
}

/// Returns the wrap TTL of `request`, or `None` when its response is not to be wrapped.
///
/// Fails with 400 for a TTL under one second or over the server's maximum TTL.
pub(crate) fn requested_ttl(core: &Core, request: &Request) -> Result<Option<Duration>, Error> {
    let Some(ttl) = request.wrap_ttl else {
        return Ok(None);
    };
    let path = request.path.trim_end_matches('/');
    let raw = UNWRAPPED_PATHS
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    if raw || path == REWRAP_PATH {
        return Ok(None);
    }
    check_ttl(core, ttl)?;
    Ok(Some(ttl))
}

/// Checks a wrap TTL against the bounds: at least one second, at most `max_lease_ttl`.
pub(crate) fn check_ttl(core: &Core, ttl: Duration) -> Result<(), Error> {
    let max = core.config.max_lease_ttl;
    if ttl < MIN_TTL {
        return Err(Error::bad_request(format!(
            "invalid wrap TTL {}: X-Vault-Wrap-TTL must be at least 1s",
            format_go_duration(ttl)
        )));
    }
    if ttl > max {
        return Err(Error::bad_request(format!(
            "invalid wrap TTL {}: X-Vault-Wrap-TTL must not exceed the maximum TTL of {}",
            format_go_duration(ttl),
            format_go_duration(max)
        )));
    }
    Ok(())
}

/// Runs `handler` and wraps its response in a new wrapping token of `ttl`.
///
/// The token is issued before the handler runs. On a read-only snapshot that first write
/// fails, so the request moves to the writer before the handler can change anything. A failed
/// request is not wrapped and its token is revoked, as is the token of a response with nothing
/// to wrap (204, a raw body, or one that carries its own `wrap_info`).
pub(crate) fn wrap_response(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    ttl: Duration,
    txn: &mut dyn Transaction,
    handler: impl FnOnce(&mut Ctx<'_>, &mut dyn Transaction) -> Result<Response, Error>,
) -> Result<Response, Error> {
    let now = ctx.now;
    let token = {
        let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
        issue(core, &mut view, now, ttl, &request.path)?
    };
    let result = handler(ctx, txn);
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let logical = match result {
        Ok(Response::Logical(logical)) if is_wrappable(&logical) => logical,
        other => {
            if other.is_ok() {
                revoke_accessor(&mut view, &token.accessor)?;
            } else {
                // The caller must see the handler's error. The writer drops a failed
                // request's writes anyway, the token's included.
                let _ = revoke_accessor(&mut view, &token.accessor);
            }
            return other;
        }
    };
    if request.operation == Operation::List && !has_entries(&logical) {
        // Vault returns 404 for an empty list rather than a token that unwraps to nothing.
        revoke_accessor(&mut view, &token.accessor)?;
        return Err(Error::not_found());
    }
    let wrapped_accessor = logical
        .auth
        .as_ref()
        .map(|auth| auth.accessor.clone())
        .unwrap_or_default();
    store(
        &mut view,
        &token,
        &WrappedResponse::of(&request.id, &logical)?,
    )?;
    Ok(wrapped(&token, wrapped_accessor, logical.warnings))
}

/// Issues a single-use wrapping token of `ttl` for a response of `creation_path`, and stores
/// its creation record.
pub(crate) fn issue(
    core: &Core,
    view: &mut SecureView<'_>,
    now: Timestamp,
    ttl: Duration,
    creation_path: &str,
) -> Result<WrappingToken, Error> {
    let params = TokenParams {
        policies: vec![RESPONSE_WRAPPING_POLICY.to_owned()],
        no_default_policy: true,
        path: creation_path.to_owned(),
        ttl: Some(ttl),
        explicit_max_ttl: ttl,
        num_uses: 1,
        ..TokenParams::default()
    };
    let auth = issue_token(core, view, now, &params)?;
    let info = token_info(view, auth.client_token.expose(), now)?
        .ok_or_else(|| Error::internal("the new wrapping token could not be read back"))?;
    let token = WrappingToken {
        token: auth.client_token,
        accessor: auth.accessor,
        token_hash: info.caller.token_hash,
        creation: Creation {
            ttl: info.creation_ttl.as_secs(),
            time: now,
            path: creation_path.to_owned(),
        },
    };
    view.put_json(
        Partition::Local,
        &cubbyhole_key(&token.token_hash, "wrapinfo")?,
        &token.creation,
    )?;
    Ok(token)
}

/// Stores `response` in the cubbyhole of `token`.
pub(crate) fn store(
    view: &mut SecureView<'_>,
    token: &WrappingToken,
    response: &WrappedResponse,
) -> Result<(), Error> {
    let stored = StoredResponse {
        response: response.text(),
    };
    view.put_json(
        Partition::Local,
        &cubbyhole_key(&token.token_hash, "response")?,
        &stored,
    )
}

/// Builds the `wrap_info` of `token`.
pub(crate) fn wrap_info(token: &WrappingToken, wrapped_accessor: String) -> WrapInfo {
    WrapInfo {
        token: token.token.clone(),
        accessor: token.accessor.clone(),
        ttl: token.creation.ttl,
        creation_time: token.creation.time.to_rfc3339(),
        creation_path: token.creation.path.clone(),
        wrapped_accessor,
    }
}

/// Builds the response returned in place of a wrapped one: `wrap_info` and the warnings.
pub(crate) fn wrapped(
    token: &WrappingToken,
    wrapped_accessor: String,
    warnings: Vec<String>,
) -> Response {
    Response::logical(Logical {
        status: 200,
        warnings,
        wrap_info: Some(wrap_info(token, wrapped_accessor)),
        ..Logical::default()
    })
}

/// Finds the live wrapping token `token`. Fails with 400 [`INVALID_TOKEN`] when it is
/// unknown, spent, expired or has any policy but `response-wrapping`.
pub(crate) fn find(view: &SecureView<'_>, token: &str, now: Timestamp) -> Result<Caller, Error> {
    let info = token_info(view, token, now)?.ok_or_else(invalid)?;
    check_policy(&info.caller)?;
    Ok(info.caller)
}

/// Fails with 400 [`INVALID_TOKEN`] unless `caller` is a wrapping token.
pub(crate) fn check_policy(caller: &Caller) -> Result<(), Error> {
    if caller.policies != [RESPONSE_WRAPPING_POLICY] {
        return Err(invalid());
    }
    Ok(())
}

/// Reads the response stored in the cubbyhole of the token whose hash is `token_hash`.
pub(crate) fn read(view: &SecureView<'_>, token_hash: &str) -> Result<WrappedResponse, Error> {
    let stored: StoredResponseIn = view
        .get_json(Partition::Local, &cubbyhole_key(token_hash, "response")?)?
        .ok_or_else(invalid)?;
    Ok(WrappedResponse::from_text(stored.response))
}

/// Reads the creation record of the token whose hash is `token_hash`.
pub(crate) fn read_creation(view: &SecureView<'_>, token_hash: &str) -> Result<Creation, Error> {
    view.get_json(Partition::Local, &cubbyhole_key(token_hash, "wrapinfo")?)?
        .ok_or_else(|| {
            Error::bad_request(
                "no information found; the wrapping token has no creation record, \
                 so it can only be unwrapped",
            )
        })
}

/// Vault's 400 for a wrapping token that is not valid.
pub(crate) fn invalid() -> Error {
    Error::bad_request(INVALID_TOKEN)
}

/// `cubbyhole/response` as stored.
#[derive(Serialize)]
struct StoredResponse<'a> {
    response: &'a str,
}

/// `cubbyhole/response` as read back. It contains the response, so it has no `Debug`.
#[derive(Deserialize)]
struct StoredResponseIn {
    response: String,
}

fn is_wrappable(logical: &Logical) -> bool {
    logical.wrap_info.is_none() && logical.status < 300
}

fn has_entries(logical: &Logical) -> bool {
    let Some(data) = &logical.data else {
        return !logical.warnings.is_empty();
    };
    match data.get("keys") {
        Some(Value::Array(keys)) => !keys.is_empty(),
        Some(_) => false,
        None => !data.is_empty() || !logical.warnings.is_empty(),
    }
}

/// Returns the key `name` in the cubbyhole of the token whose hash is `token_hash`, in the
/// cubbyhole engine's layout.
fn cubbyhole_key(token_hash: &str, name: &str) -> Result<String, Error> {
    // An empty or slash-bearing hash would name another token's cubbyhole.
    if token_hash.is_empty() || token_hash.contains('/') {
        return Err(Error::internal(
            "a cubbyhole needs a token hash without \"/\"",
        ));
    }
    Ok(format!("cubbyhole/{token_hash}/{name}"))
}
