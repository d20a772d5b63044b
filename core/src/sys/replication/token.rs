//! `primary/secondary-token`: an activation token for one secondary, with its bundle stored
//! under a single-use wrapping token.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::Core;
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::{
    BootstrapBundle, IssuedActivation, PublicKey, SecondaryRegistry, SecondaryTokenRequest,
    issue_secondary_token,
};
use crate::request::{Logical, Request, Response, WrapInfo};
use crate::storage::Transaction;
use crate::time::Timestamp;
use crate::token::revoke_accessor;
use crate::wrapping::{self, WrappedResponse, WrappingToken};

use super::params::{optional_string, secondary_id};
use super::state::{self, PrimaryIdentity};

/// The path recorded on activation wrapping tokens and in `wrap_info.creation_path`.
pub(crate) const CREATION_PATH: &str = "sys/replication/performance/primary/secondary-token";

const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

const NO_API_ADDR_WARNING: &str = "The primary has no API address, so the token has no \"addr\" \
     claim: give the primary's API address as primary_api_addr when enabling the secondary.";

/// The body of `secondary-token`.
struct TokenArgs {
    id: String,
    ttl: Duration,
    public_key: Option<PublicKey>,
}

/// Issues an activation token for the secondary `id`.
pub(super) fn secondary_token(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let args = token_args(core, &request.data)?;
    let now = ctx.now;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let identity = state::require_primary(&view)?;
    let mut registry = state::load_registry(&view)?;
    registry.prune(now);
    reject_active(&registry, &args.id)?;
    let wrapping = wrapping::issue(core, &mut view, now, args.ttl, CREATION_PATH)?;
    let issued = issue(&identity, &registry, &mut view, now, &args, &wrapping)?;
    store_bundle(&mut view, &wrapping, &issued.bundle)?;
    state::save_registry(&mut view, &issued.registry)?;
    for accessor in &issued.voided.tokens {
        revoke_accessor(&mut view, accessor)?;
    }
    Ok(response(&identity, issued, wrapping))
}

fn token_args(core: &Core, data: &Map<String, Value>) -> Result<TokenArgs, Error> {
    let id = secondary_id(data)?;
    let ttl = params::duration(data, "ttl")?.unwrap_or(DEFAULT_TTL);
    if ttl.is_zero() {
        return Err(Error::bad_request(
            "invalid ttl: an activation token needs a positive ttl, such as \"30m\"",
        ));
    }
    let public_key = match optional_string(data, "secondary_public_key")? {
        Some(text) => Some(PublicKey::from_base64(&text).map_err(|error| {
            Error::bad_request(format!("invalid secondary_public_key: {error}"))
        })?),
        None => None,
    };
    Ok(TokenArgs {
        id,
        ttl: ttl.min(core.config.max_lease_ttl),
        public_key,
    })
}

fn reject_active(registry: &SecondaryRegistry, id: &str) -> Result<(), Error> {
    if registry.active_cert(id).is_some() {
        return Err(Error::bad_request(format!(
            "a secondary with id {id:?} already exists; revoke it with \
             sys/replication/performance/primary/revoke-secondary before issuing a new token"
        )));
    }
    Ok(())
}

fn issue(
    identity: &PrimaryIdentity,
    registry: &SecondaryRegistry,
    view: &mut SecureView<'_>,
    now: Timestamp,
    args: &TokenArgs,
    wrapping: &WrappingToken,
) -> Result<IssuedActivation, Error> {
    let request = SecondaryTokenRequest {
        secondary_id: &args.id,
        ttl: args.ttl,
        secondary_public_key: args.public_key,
        wrapping_token: &wrapping.token,
        wrapping_accessor: &wrapping.accessor,
        primary_api_addr: identity.api_addr.as_deref(),
        primary_cluster_addrs: &identity.cluster_addrs,
        primary_cert_der: &identity.primary_cert.cert_der,
        epoch: identity.epoch.number,
        epoch_start: identity.epoch_start.clone(),
    };
    let rng = view.rng();
    issue_secondary_token(
        &identity.ca,
        &identity.signing_key,
        registry,
        rng,
        now,
        &request,
    )
    .map_err(|error| Error::bad_request(error.to_string()))
}

fn store_bundle(
    view: &mut SecureView<'_>,
    wrapping: &WrappingToken,
    bundle: &BootstrapBundle,
) -> Result<(), Error> {
    let data = match serde_json::to_value(bundle)? {
        Value::Object(data) => data,
        _ => {
            return Err(Error::internal(
                "a bootstrap bundle must encode as an object",
            ));
        }
    };
    wrapping::store(view, wrapping, &WrappedResponse::data(data)?)
}

fn response(
    identity: &PrimaryIdentity,
    issued: IssuedActivation,
    wrapping: WrappingToken,
) -> Response {
    let warnings = match identity.api_addr {
        Some(_) => Vec::new(),
        None => vec![NO_API_ADDR_WARNING.to_owned()],
    };
    let mut wrap_info: WrapInfo = wrapping::wrap_info(&wrapping, String::new());
    // The client gets the signed JWT, which names the wrapping token in its `jti` claim.
    wrap_info.token = issued.token;
    Response::logical(Logical {
        status: 200,
        data: None,
        warnings,
        wrap_info: Some(wrap_info),
        ..Logical::default()
    })
}
