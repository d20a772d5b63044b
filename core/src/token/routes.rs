//! The `auth/token/` paths other than creation: lookup, renew, revoke and accessors.

use serde_json::{Map, json};
use zeroize::Zeroizing;

use super::create::{CreateKind, create, expiry, renewed_ttl};
use super::params;
use super::response::{auth_response, lookup_data};
use super::roles;
use super::store::{self, TokenEntry};
use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Logical, Operation, Request, Response, Secret};
use crate::storage::Transaction;

/// The token a request is about.
enum Target {
    /// The calling token.
    Caller,
    /// The token in the `token` field, or the caller's when the field is empty (lookup only).
    TokenOrCaller,
    /// The token in the `token` field, which must be present.
    Token,
    /// The token with the accessor in the `accessor` field.
    Accessor,
}

/// Routes `auth/token/<rest>`.
pub(super) fn dispatch(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    rest: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    use Operation::{List, Read, Update};
    if let Some((base, moved)) = path_parameter(request, rest) {
        return dispatch(core, ctx, &moved, caller, base, txn);
    }
    match (request.operation, rest) {
        (Update, "create") => match params::string(&request.data, "role_name")? {
            Some(role) if !role.is_empty() => {
                create(core, ctx, request, caller, txn, CreateKind::Role(&role))
            }
            _ => create(core, ctx, request, caller, txn, CreateKind::Normal),
        },
        (Update, "create-orphan") => create(core, ctx, request, caller, txn, CreateKind::Orphan),
        (Update, role) if role.starts_with("create/") => {
            let name = &role["create/".len()..];
            create(core, ctx, request, caller, txn, CreateKind::Role(name))
        }
        (_, "roles") => roles::handle(core, ctx, request, "", txn),
        (_, role) if role.starts_with("roles/") => {
            roles::handle(core, ctx, request, &role["roles/".len()..], txn)
        }
        (Read | Update, "lookup-self") => lookup(core, ctx, request, caller, Target::Caller, txn),
        (Read | Update, "lookup") => lookup(core, ctx, request, caller, Target::TokenOrCaller, txn),
        (Update, "lookup-accessor") => lookup(core, ctx, request, caller, Target::Accessor, txn),
        (Update, "renew-self") => renew(core, ctx, request, caller, Target::Caller, txn),
        (Update, "renew") => renew(core, ctx, request, caller, Target::Token, txn),
        (Update, "renew-accessor") => renew(core, ctx, request, caller, Target::Accessor, txn),
        (Update, "revoke-self") => revoke(core, ctx, request, caller, Target::Caller, txn),
        (Update, "revoke") => revoke(core, ctx, request, caller, Target::Token, txn),
        (Update, "revoke-accessor") => revoke(core, ctx, request, caller, Target::Accessor, txn),
        (Update, "revoke-orphan") => revoke_orphan(core, ctx, request, caller, txn),
        (List, "accessors") => list_accessors(core, ctx, txn),
        (Update, "tidy") => tidy(core, ctx, txn),
        (_, path) if is_known(path) => Err(Error::unsupported_operation()),
        _ => Err(Error::no_handler(&request.path)),
    }
}

/// Rewrites the older forms that put the token or accessor in the path (`lookup/<token>`,
/// `revoke-accessor/<accessor>`, ...), as the request with that value moved into its data.
fn path_parameter<'a>(request: &Request, rest: &'a str) -> Option<(&'a str, Request)> {
    let parameter = super::paths::split(rest)?;
    let mut moved = request.clone();
    moved
        .data
        .insert(parameter.field.to_owned(), json!(parameter.value));
    Some((parameter.base, moved))
}

fn is_known(path: &str) -> bool {
    const KNOWN: &[&str] = &[
        "create",
        "create-orphan",
        "lookup",
        "lookup-self",
        "lookup-accessor",
        "renew",
        "renew-self",
        "renew-accessor",
        "revoke",
        "revoke-self",
        "revoke-accessor",
        "revoke-orphan",
        "accessors",
        "tidy",
    ];
    KNOWN.contains(&path)
}

/// A resolved target: its hash, its entry, and the token when the request carried it.
struct Found {
    token_hash: String,
    entry: TokenEntry,
    token: Option<Secret>,
}

/// Finds the target token. An unknown token is a 403 `bad token`, an unknown accessor a 400
/// `invalid accessor`.
fn find(
    view: &SecureView<'_>,
    request: &Request,
    caller: &Caller,
    target: Target,
) -> Result<Found, Error> {
    let named = match target {
        Target::Token | Target::TokenOrCaller => {
            let token = params::string(&request.data, "token")?;
            token.filter(|token| !token.is_empty()).map(Zeroizing::new)
        }
        _ => None,
    };
    match (target, named) {
        (Target::Accessor, _) => {
            let accessor = params::string(&request.data, "accessor")?.unwrap_or_default();
            let invalid = || Error::bad_request("invalid accessor");
            let token_hash = store::hash_for_accessor(view, &accessor)?.ok_or_else(invalid)?;
            let entry = store::get(view, &token_hash)?
                .filter(|entry| !entry.revoke_pending)
                .ok_or_else(invalid)?;
            Ok(Found {
                token_hash,
                entry,
                token: None,
            })
        }
        (Target::Token, None) => Err(Error::bad_request("missing token: send the token field")),
        (Target::Token | Target::TokenOrCaller, Some(token)) => {
            let (token_hash, entry) = store::find(view, &token)?
                .filter(|(_, entry)| !entry.revoke_pending)
                .ok_or_else(bad_token)?;
            Ok(Found {
                token_hash,
                entry,
                token: Some(Secret::new(token.as_str())),
            })
        }
        (Target::Caller, _) | (Target::TokenOrCaller, None) => {
            let entry = store::get(view, &caller.token_hash)?.ok_or_else(bad_token)?;
            Ok(Found {
                token_hash: caller.token_hash.clone(),
                entry,
                token: request.token.clone(),
            })
        }
    }
}

fn bad_token() -> Error {
    Error::api(403, "bad token")
}

/// Fails with `bad token` when the target expired or has a missing or expired ancestor.
fn check_valid(
    view: &SecureView<'_>,
    entry: &TokenEntry,
    now: crate::time::Timestamp,
) -> Result<(), Error> {
    if entry.is_expired(now) || store::live_ancestors(view, entry, now)?.is_none() {
        return Err(bad_token());
    }
    Ok(())
}

fn lookup(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    target: Target,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let found = find(&view, request, caller, target)?;
    check_valid(&view, &found.entry, ctx.now)?;
    let id = found.token.as_ref().map_or("", Secret::expose);
    Ok(Response::data(lookup_data(&found.entry, id, ctx.now)))
}

fn renew(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    target: Target,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let increment = params::duration(&request.data, "increment")?;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let mut found = find(&view, request, caller, target)?;
    check_valid(&view, &found.entry, ctx.now)?;
    extend(
        core,
        &mut view,
        &found.token_hash,
        &mut found.entry,
        increment,
        ctx.now,
    )?;
    let token = found.token.unwrap_or_default();
    Ok(auth_response(&token, &found.entry, Vec::new()))
}

/// Renews the token with `token_hash` by `increment` (or its creation TTL), within its maximum
/// TTL, and returns its entry. `sys/leases/renew` calls it for a token lease. Fails with
/// `bad token` when the token is gone or no longer valid.
pub(crate) fn renew_by_hash(
    core: &Core,
    view: &mut SecureView<'_>,
    token_hash: &str,
    increment: Option<std::time::Duration>,
    now: crate::time::Timestamp,
) -> Result<TokenEntry, Error> {
    let mut entry = store::get(view, token_hash)?
        .filter(|entry| !entry.revoke_pending)
        .ok_or_else(bad_token)?;
    check_valid(view, &entry, now)?;
    extend(core, view, token_hash, &mut entry, increment, now)?;
    Ok(entry)
}

fn extend(
    core: &Core,
    view: &mut SecureView<'_>,
    token_hash: &str,
    entry: &mut TokenEntry,
    increment: Option<std::time::Duration>,
    now: crate::time::Timestamp,
) -> Result<(), Error> {
    let ttl = renewed_ttl(&core.config, entry, increment, now)?;
    entry.ttl = ttl.as_secs();
    entry.expire_time = expiry(now, ttl);
    entry.last_renewal_time = Some(now);
    store::save(view, token_hash, entry)
}

fn revoke(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    target: Target,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    match find(&view, request, caller, target) {
        Ok(found) => store::revoke_tree(&mut view, &found.token_hash)?,
        // Revoking a token that is already gone succeeds, as in Vault.
        Err(Error::Api { status: 403, .. }) => {}
        Err(error) => return Err(error),
    }
    Ok(Response::NoContent)
}

fn revoke_orphan(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    match find(&view, request, caller, Target::Token) {
        Ok(found) => store::revoke_orphan(&mut view, &found.token_hash)?,
        Err(Error::Api { status: 403, .. }) => {}
        Err(error) => return Err(error),
    }
    Ok(Response::NoContent)
}

fn list_accessors(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let keys = store::accessors(&view)?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    let mut data = Map::new();
    data.insert("keys".into(), json!(keys));
    Ok(Response::data(data))
}

fn tidy(core: &Core, ctx: &mut Ctx<'_>, txn: &mut dyn Transaction) -> Result<Response, Error> {
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let revoked = store::tidy(&mut view, now)?;
    Ok(Response::logical(Logical {
        status: 200,
        warnings: vec![format!("tidy revoked {revoked} expired or used-up tokens")],
        ..Logical::default()
    }))
}

/// Returns the policies of a token, for `sys/capabilities`.
pub(crate) fn policies_of_token(
    view: &SecureView<'_>,
    token: &str,
    now: crate::time::Timestamp,
) -> Result<Option<Vec<String>>, Error> {
    let Some((_, entry)) = store::find(view, token)? else {
        return Ok(None);
    };
    Ok(store::is_valid(view, &entry, now)?.then_some(entry.policies))
}

/// Returns the policies of the token with `accessor`, for `sys/capabilities-accessor`.
pub(crate) fn policies_of_accessor(
    view: &SecureView<'_>,
    accessor: &str,
    now: crate::time::Timestamp,
) -> Result<Option<Vec<String>>, Error> {
    let Some(token_hash) = store::hash_for_accessor(view, accessor)? else {
        return Ok(None);
    };
    let Some(entry) = store::get(view, &token_hash)? else {
        return Ok(None);
    };
    Ok(store::is_valid(view, &entry, now)?.then_some(entry.policies))
}
