//! `sys/wrapping/...`: wrap arbitrary data, and unwrap, look up and rewrap wrapping tokens.
//!
//! An activation JWT sent to `sys/wrapping/unwrap` goes to replication, which checks its
//! signature and spends it. Every other token is a plain wrapping token, taken from the body's
//! `token` or else the client token.

use std::time::Duration;

use serde_json::Value;

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::token::looks_like_jwt;
use crate::request::{Caller, Operation, Request, Response, Secret};
use crate::storage::Transaction;
use crate::token::revoke_accessor;
use crate::wrapping;

use super::replication;

const UNWRAP_PATH: &str = "sys/wrapping/unwrap";
const REWRAP_PATH: &str = "sys/wrapping/rewrap";

type Handler = fn(
    &Core,
    &mut Ctx<'_>,
    &Request,
    Option<&Caller>,
    &mut dyn Transaction,
) -> Result<Response, Error>;

/// Serves `sys/wrapping/...`, or returns `None` for other paths.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let path = request.path.trim_end_matches('/');
    let (handler, reads): (Handler, bool) = match path {
        "sys/wrapping/wrap" => (wrap, false),
        UNWRAP_PATH => (unwrap, false),
        "sys/wrapping/lookup" => (lookup, true),
        REWRAP_PATH => (rewrap, false),
        _ => return None,
    };
    let allowed =
        request.operation == Operation::Update || (reads && request.operation == Operation::Read);
    if !allowed {
        return Some(Err(Error::unsupported_operation()));
    }
    Some(handler(core, ctx, request, caller, txn))
}

/// Rejects an unwrap or rewrap whose wrapping token is not valid, before the token is checked
/// as a client token, so a spent wrapping token sent as the client token gets Vault's 400
/// rather than a 403.
pub(super) fn check_wrapping_token(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<(), Error> {
    let path = request.path.trim_end_matches('/');
    if (path != UNWRAP_PATH && path != REWRAP_PATH) || request.operation != Operation::Update {
        return Ok(());
    }
    let body = body_token(request)?;
    let Some(token) = body.or(request.token.as_ref().map(Secret::expose)) else {
        return Ok(());
    };
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    wrapping::find(&view, token, ctx.now).map(|_| ())
}

/// `sys/wrapping/wrap`: the request's data becomes the wrapped response.
fn wrap(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if request.wrap_ttl.is_none() {
        return Err(Error::bad_request(
            "endpoint requires response wrapping to be used",
        ));
    }
    Ok(Response::data(request.data.clone()))
}

/// `sys/wrapping/unwrap`: returns the wrapped response and revokes its token.
fn unwrap(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if let Some(jwt) = replication::activation_jwt(request) {
        return replication::unwrap_activation(core, ctx, jwt, txn);
    }
    let caller = caller.ok_or_else(Error::permission_denied)?;
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let wrapping = match body_token(request)? {
        Some(token) => wrapping::find(&view, token, now)?,
        None => own_token(caller)?,
    };
    if replication::is_activation_wrapping(&wrapping) {
        return Err(activation_only_as_jwt());
    }
    let logical = wrapping::read(&view, &wrapping.token_hash)?.to_logical()?;
    revoke_accessor(&mut view, &wrapping.accessor)?;
    Ok(Response::logical(logical))
}

/// `sys/wrapping/lookup`: the creation TTL, time and path of a wrapping token, which stays
/// valid.
fn lookup(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let body = body_token(request)?;
    let token = body
        .or(request.token.as_ref().map(Secret::expose))
        .ok_or_else(|| Error::bad_request("missing \"token\" value in input"))?;
    if looks_like_jwt(token) {
        return replication::lookup_activation(core, ctx, token, txn);
    }
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let wrapping = wrapping::find(&view, token, ctx.now)?;
    let creation = wrapping::read_creation(&view, &wrapping.token_hash)?;
    Ok(Response::data(creation.lookup_data()))
}

/// `sys/wrapping/rewrap`: moves the wrapped response to a new token with the old token's
/// creation TTL and path, and revokes the old token.
fn rewrap(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let old = match body_token(request)? {
        Some(token) => wrapping::find(&view, token, now)?,
        None => own_token(caller.ok_or_else(Error::permission_denied)?)?,
    };
    if replication::is_activation_wrapping(&old) {
        return Err(activation_only_as_jwt());
    }
    let creation = wrapping::read_creation(&view, &old.token_hash)?;
    let response = wrapping::read(&view, &old.token_hash)?;
    let mut ttl = Duration::from_secs(creation.ttl);
    if let Some(requested) = request.wrap_ttl {
        wrapping::check_ttl(core, requested)?;
        ttl = ttl.min(requested);
    }
    let new = wrapping::issue(core, &mut view, now, ttl, &creation.path)?;
    wrapping::store(&mut view, &new, &response)?;
    revoke_accessor(&mut view, &old.accessor)?;
    Ok(wrapping::wrapped(&new, String::new(), Vec::new()))
}

/// Returns the body's `token`. An empty one counts as absent.
fn body_token(request: &Request) -> Result<Option<&str>, Error> {
    match request.data.get("token") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) if token.is_empty() => Ok(None),
        Some(Value::String(token)) => Ok(Some(token)),
        Some(_) => Err(Error::bad_request(
            "invalid token: \"token\" must be a string containing the wrapping token",
        )),
    }
}

/// Returns the caller as the wrapping token, for a call with no `token` in its body.
fn own_token(caller: &Caller) -> Result<Caller, Error> {
    wrapping::check_policy(caller)?;
    Ok(caller.clone())
}

fn activation_only_as_jwt() -> Error {
    Error::bad_request(
        "an activation token unwraps only in its JWT form, as returned in wrap_info.token",
    )
}
