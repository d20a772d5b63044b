//! `sys/wrapping/unwrap` of an activation JWT: checked and spent in one transaction.
//!
//! The bundle lives in the cubbyhole of the wrapping token the JWT names (its `jti`), stored
//! by [`crate::wrapping`] like any wrapped response.

use serde_json::Value;

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::SecondaryRegistry;
use crate::replication::activation::token::{self, ACTIVATION_TOKEN_TYPE, Claims, looks_like_jwt};
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;
use crate::time::Timestamp;
use crate::token::{revoke_token, token_info};
use crate::wrapping::{self, INVALID_TOKEN, invalid};

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
    let (claims, wrapping, mut registry) = verified_wrapping(&view, jwt, now)?;
    let data = wrapping::read(&view, &wrapping.token_hash)?
        .to_logical()?
        .data
        .unwrap_or_default();
    revoke_token(&mut view, &claims.jti)?;
    registry.mark_used(&claims.id, &wrapping.accessor);
    state::save_registry(&mut view, &registry)?;
    Ok(Response::data(data))
}

/// Checks the JWT as [`unwrap_activation`] does, then returns the creation time, TTL and path
/// of its wrapping token, which stays valid.
pub(in crate::sys) fn lookup_activation(
    core: &Core,
    ctx: &mut Ctx<'_>,
    jwt: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let (_, wrapping, _) = verified_wrapping(&view, jwt, ctx.now)?;
    let creation = wrapping::read_creation(&view, &wrapping.token_hash)?;
    Ok(Response::data(creation.lookup_data()))
}

/// Verifies the activation JWT against this primary's signing key and returns its claims, the
/// live wrapping token that holds its bundle, and the activation registry.
fn verified_wrapping(
    view: &SecureView<'_>,
    jwt: &str,
    now: Timestamp,
) -> Result<(Claims, Caller, SecondaryRegistry), Error> {
    let Some(identity) = state::load_primary(view)? else {
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
    let registry = state::load_registry(view)?;
    // The signature shows this primary issued the token and it has not expired, so a missing
    // wrapping token was spent by an earlier unwrap, or revoked directly. Saying so reveals
    // nothing the holder of a genuine token does not know already.
    let wrapping = token_info(view, &claims.jti, now)?
        .map(|info| info.caller)
        .filter(is_activation_wrapping)
        .ok_or_else(|| Error::bad_request(format!("{ALREADY_USED}: {INVALID_TOKEN}")))?;
    if registry.is_voided(&wrapping.accessor) {
        return Err(Error::bad_request(format!("{VOIDED}: {INVALID_TOKEN}")));
    }
    Ok((claims, wrapping, registry))
}

/// The start of the message for a genuine, unexpired activation token whose bundle is gone.
pub(super) const ALREADY_USED: &str =
    "the activation token was already used, or its wrapping token was revoked";

/// The start of the message for an activation token voided by revoking its secondary id.
const VOIDED: &str = "the activation token was voided when its secondary id was revoked";
