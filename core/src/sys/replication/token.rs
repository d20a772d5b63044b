//! `primary/secondary-token`: an activation token for one secondary, with its bundle stored
//! under a single-use wrapping token.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::Core;
use crate::acl::RESPONSE_WRAPPING_POLICY;
use crate::barrier::SecureView;
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::{
    BootstrapBundle, IssuedActivation, PublicKey, SecondaryRegistry, SecondaryTokenRequest,
    issue_secondary_token,
};
use crate::request::{Auth, Logical, Request, Response, WrapInfo};
use crate::storage::Transaction;
use crate::time::Timestamp;
use crate::token::{TokenParams, issue_token, revoke_accessor, token_info};

use super::params::{optional_string, secondary_id};
use super::state::{self, PrimaryIdentity};
use super::unwrap;

/// The path recorded on activation wrapping tokens and in `wrap_info.creation_path`.
pub(super) const CREATION_PATH: &str = "sys/replication/performance/primary/secondary-token";

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
    let auth = issue_token(core, &mut view, now, &wrapping_params(args.ttl))?;
    let issued = issue(&identity, &registry, &mut view, now, &args, &auth)?;
    store_bundle(&mut view, &auth, now, &issued.bundle)?;
    state::save_registry(&mut view, &issued.registry)?;
    for accessor in &issued.voided.tokens {
        revoke_accessor(&mut view, accessor)?;
    }
    Ok(response(&identity, issued, auth, args.ttl, now))
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

fn wrapping_params(ttl: Duration) -> TokenParams {
    TokenParams {
        policies: vec![RESPONSE_WRAPPING_POLICY.to_owned()],
        no_default_policy: true,
        path: CREATION_PATH.to_owned(),
        ttl: Some(ttl),
        explicit_max_ttl: ttl,
        num_uses: 1,
        ..TokenParams::default()
    }
}

fn issue(
    identity: &PrimaryIdentity,
    registry: &SecondaryRegistry,
    view: &mut SecureView<'_>,
    now: Timestamp,
    args: &TokenArgs,
    auth: &Auth,
) -> Result<IssuedActivation, Error> {
    let request = SecondaryTokenRequest {
        secondary_id: &args.id,
        ttl: args.ttl,
        secondary_public_key: args.public_key,
        wrapping_token: &auth.client_token,
        wrapping_accessor: &auth.accessor,
        primary_api_addr: identity.api_addr.as_deref(),
        primary_cluster_addrs: &identity.cluster_addrs,
        primary_cert_der: &identity.primary_cert.cert_der,
        epoch: identity.epoch.number,
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
    auth: &Auth,
    now: Timestamp,
    bundle: &BootstrapBundle,
) -> Result<(), Error> {
    let info = token_info(view, auth.client_token.expose(), now)?
        .ok_or_else(|| Error::internal("the new wrapping token could not be read back"))?;
    let data = match serde_json::to_value(bundle)? {
        Value::Object(data) => data,
        _ => {
            return Err(Error::internal(
                "a bootstrap bundle must encode as an object",
            ));
        }
    };
    unwrap::store_response(view, &info.caller.token_hash, data)
}

fn response(
    identity: &PrimaryIdentity,
    issued: IssuedActivation,
    auth: Auth,
    ttl: Duration,
    now: Timestamp,
) -> Response {
    let warnings = match identity.api_addr {
        Some(_) => Vec::new(),
        None => vec![NO_API_ADDR_WARNING.to_owned()],
    };
    Response::logical(Logical {
        status: 200,
        data: None,
        warnings,
        wrap_info: Some(WrapInfo {
            token: issued.token,
            accessor: auth.accessor,
            ttl: ttl.as_secs(),
            creation_time: now.to_rfc3339(),
            creation_path: CREATION_PATH.to_owned(),
            wrapped_accessor: String::new(),
        }),
        ..Logical::default()
    })
}
