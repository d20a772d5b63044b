//! `sys/wrapping/unwrap`: activation JWTs, checked and spent in one transaction, and plain
//! wrapping tokens.
//!
//! A wrapped response lives in the wrapping token's cubbyhole at `response`, as
//! `{"response": "<JSON of {\"data\": ...}>"}`, the layout Vault uses.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::acl::RESPONSE_WRAPPING_POLICY;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::token::{self, ACTIVATION_TOKEN_TYPE, looks_like_jwt};
use crate::request::{Caller, Request, Response};
use crate::storage::{Partition, Transaction};
use crate::time::Timestamp;
use crate::token::{revoke_accessor, revoke_token, token_info};

use super::state;
use super::token::CREATION_PATH;

const INVALID_TOKEN: &str = "wrapping token is not valid or does not exist";

/// The activation JWT of an unwrap request: the body's `token`, or the client token when the
/// body has none.
pub(super) fn jwt_of(request: &Request) -> Option<&str> {
    let token = match request.data.get("token") {
        Some(Value::String(token)) => token.as_str(),
        Some(_) => return None,
        None => request.token.as_ref()?.expose(),
    };
    looks_like_jwt(token).then_some(token)
}

/// Stores `data` as the wrapped response of the token whose salted hash is `token_hash`.
pub(super) fn store_response(
    view: &mut SecureView<'_>,
    token_hash: &str,
    data: Map<String, Value>,
) -> Result<(), Error> {
    let response = serde_json::to_string(&json!({ "data": data }))?;
    let stored = json!({ "response": response });
    view.put_json(Partition::Local, &response_key(token_hash)?, &stored)
}

/// Unwraps the body's `token` or the client token.
pub(super) fn handle(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if request.operation != crate::request::Operation::Update {
        return Err(Error::unsupported_operation());
    }
    if let Some(jwt) = jwt_of(request) {
        return unwrap_activation(core, ctx, jwt, txn);
    }
    let caller = caller.ok_or_else(Error::permission_denied)?;
    let body_token = crate::engines::params::string(&request.data, "token")?;
    unwrap_plain(core, ctx, caller, body_token.as_deref(), txn)
}

/// Checks the JWT's signature, type and times, then returns the bundle and revokes the
/// wrapping token in the same transaction.
fn unwrap_activation(
    core: &Core,
    ctx: &mut Ctx<'_>,
    jwt: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let Some(identity) = state::load_primary(&view)? else {
        return Err(invalid());
    };
    let public_key = identity.signing_key.public_key();
    let claims = token::verify(&public_key, jwt, now, ACTIVATION_TOKEN_TYPE)
        .map_err(|error| Error::bad_request(error.to_string()))?;
    // The primary checks its own token against its own clock, so the leeway for clock skew
    // does not apply here; without this the expired wrapping token would answer first, with
    // a message that does not say why.
    if now.as_secs() >= claims.exp {
        let expired = token::TokenError::Expired {
            exp: Timestamp::from_secs(claims.exp).to_rfc3339_seconds(),
            now: now.to_rfc3339_seconds(),
        };
        return Err(Error::bad_request(expired.to_string()));
    }
    let wrapping = live_wrapping_token(&view, &claims.jti, now)?;
    if wrapping.token_path != CREATION_PATH {
        return Err(invalid());
    }
    let mut registry = state::load_registry(&view)?;
    if registry.is_voided(&wrapping.accessor) {
        return Err(invalid());
    }
    let data = read_response(&view, &wrapping.token_hash)?;
    revoke_token(&mut view, &claims.jti)?;
    registry.mark_used(&claims.id, &wrapping.accessor);
    state::save_registry(&mut view, &registry)?;
    Ok(Response::data(data))
}

/// Vault's unwrap of a plain wrapping token, given in the body or as the client token.
fn unwrap_plain(
    core: &Core,
    ctx: &mut Ctx<'_>,
    caller: &Caller,
    body_token: Option<&str>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let wrapping = match body_token {
        Some(token) => live_wrapping_token(&view, token, now)?,
        None => caller.clone(),
    };
    if wrapping.policies != [RESPONSE_WRAPPING_POLICY] {
        return Err(invalid());
    }
    if wrapping.token_path == CREATION_PATH {
        return Err(Error::bad_request(
            "an activation token unwraps only in its JWT form, as returned in wrap_info.token",
        ));
    }
    let data = read_response(&view, &wrapping.token_hash)?;
    revoke_accessor(&mut view, &wrapping.accessor)?;
    Ok(Response::data(data))
}

fn live_wrapping_token(
    view: &SecureView<'_>,
    token: &str,
    now: Timestamp,
) -> Result<Caller, Error> {
    let info = token_info(view, token, now)?.ok_or_else(invalid)?;
    Ok(info.caller)
}

fn read_response(view: &SecureView<'_>, token_hash: &str) -> Result<Map<String, Value>, Error> {
    let stored: Map<String, Value> = view
        .get_json(Partition::Local, &response_key(token_hash)?)?
        .ok_or_else(invalid)?;
    let Some(Value::String(response)) = stored.get("response") else {
        return Err(invalid());
    };
    let response: Map<String, Value> = serde_json::from_str(response)?;
    match response.get("data") {
        Some(Value::Object(data)) => Ok(data.clone()),
        _ => Ok(Map::new()),
    }
}

/// The cubbyhole key of the wrapped response, in the cubbyhole engine's layout.
fn response_key(token_hash: &str) -> Result<String, Error> {
    // An empty or slash-bearing hash would name another token's cubbyhole.
    if token_hash.is_empty() || token_hash.contains('/') {
        return Err(Error::internal(
            "a cubbyhole needs a token hash without \"/\"",
        ));
    }
    Ok(format!("cubbyhole/{token_hash}/response"))
}

fn invalid() -> Error {
    Error::bad_request(INVALID_TOKEN)
}
