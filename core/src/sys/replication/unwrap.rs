//! `sys/wrapping/unwrap` of an activation JWT: checked and spent in one transaction.
//!
//! The bundle lives in the cubbyhole of the wrapping token the JWT names (its `jti`), stored
//! by [`crate::wrapping`] like any wrapped response.

use serde_json::Value;

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::token::{self, ACTIVATION_TOKEN_TYPE, looks_like_jwt};
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;
use crate::time::Timestamp;
use crate::token::{revoke_token, token_info};
use crate::wrapping::{self, invalid};

use super::state;
use super::token::CREATION_PATH;

/// The activation JWT of an unwrap request: the body's `token`, or the client token when the
/// body has none.
pub(in crate::sys) fn jwt_of(request: &Request) -> Option<&str> {
    let token = match request.data.get("token") {
        Some(Value::String(token)) => token.as_str(),
        Some(_) => return None,
        None => request.token.as_ref()?.expose(),
    };
    looks_like_jwt(token).then_some(token)
}

/// Whether `wrapping` holds an activation bundle, which unwraps only through its JWT.
pub(in crate::sys) fn is_activation_wrapping(wrapping: &Caller) -> bool {
    wrapping.token_path == CREATION_PATH
}

/// Checks the JWT's signature, type and times, then returns the bundle and revokes the
/// wrapping token in the same transaction.
pub(in crate::sys) fn unwrap_activation(
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
    // does not apply here; without this the expired wrapping token would be reported first, with
    // a message that does not say why.
    if now.as_secs() >= claims.exp {
        let expired = token::TokenError::Expired {
            exp: Timestamp::from_secs(claims.exp).to_rfc3339_seconds(),
            now: now.to_rfc3339_seconds(),
        };
        return Err(Error::bad_request(expired.to_string()));
    }
    let wrapping = token_info(&view, &claims.jti, now)?
        .ok_or_else(invalid)?
        .caller;
    if !is_activation_wrapping(&wrapping) {
        return Err(invalid());
    }
    let mut registry = state::load_registry(&view)?;
    if registry.is_voided(&wrapping.accessor) {
        return Err(invalid());
    }
    let data = wrapping::read(&view, &wrapping.token_hash)?
        .to_logical()?
        .data
        .unwrap_or_default();
    revoke_token(&mut view, &claims.jti)?;
    registry.mark_used(&claims.id, &wrapping.accessor);
    state::save_registry(&mut view, &registry)?;
    Ok(Response::data(data))
}
