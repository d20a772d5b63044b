//! Token creation (`auth/token/create`, `create-orphan`) and the TTL rules for new tokens.

use std::collections::BTreeMap;
use std::time::Duration;

use super::params;
use super::response::auth_response;
use super::roles::{self, TokenRole};
use super::store::{self, TokenEntry};
use crate::Core;
use crate::acl::{self, DEFAULT_POLICY, RESPONSE_WRAPPING_POLICY, ROOT_POLICY};
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::{CoreConfig, Ctx};
use crate::request::{Caller, Request, Response, Secret};
use crate::storage::Transaction;
use crate::time::{Timestamp, format_go_duration};

/// The prefix of service tokens, as Vault 1.10 and later issue them.
const TOKEN_PREFIX: &str = "hvs.";

/// Random base62 characters after the prefix. The root token's length (28) fixes the length of
/// generate-root's one-time password.
const TOKEN_RANDOM_LEN: usize = 24;

pub(super) const ACCESSOR_LEN: usize = 24;

/// The parameters of a create request.
struct CreateParams {
    id: Option<String>,
    policies: Option<Vec<String>>,
    meta: BTreeMap<String, String>,
    no_parent: bool,
    no_default_policy: bool,
    renewable: bool,
    ttl: Option<Duration>,
    explicit_max_ttl: Duration,
    display_name: Option<String>,
    num_uses: u64,
    period: Duration,
}

impl CreateParams {
    fn parse(request: &Request) -> Result<CreateParams, Error> {
        let data = &request.data;
        if let Some(kind) = params::string(data, "type")? {
            match kind.as_str() {
                "" | "service" | "default" | "default-service" => {}
                "batch" | "default-batch" => {
                    return Err(Error::bad_request("batch tokens are not supported"));
                }
                other => {
                    return Err(Error::bad_request(format!(
                        "invalid token type {other:?}: use \"service\""
                    )));
                }
            }
        }
        let ttl = match params::duration(data, "ttl")? {
            Some(ttl) => Some(ttl),
            None => params::duration(data, "lease")?,
        };
        Ok(CreateParams {
            id: params::string(data, "id")?.filter(|id| !id.is_empty()),
            policies: params::string_list(data, "policies")?
                .map(|names| policy_names(&names))
                .transpose()?,
            meta: params::string_map(data, "meta")?,
            no_parent: params::boolean(data, "no_parent")?.unwrap_or(false),
            no_default_policy: params::boolean(data, "no_default_policy")?.unwrap_or(false),
            renewable: params::boolean(data, "renewable")?.unwrap_or(true),
            ttl,
            explicit_max_ttl: params::duration(data, "explicit_max_ttl")?.unwrap_or_default(),
            display_name: params::string(data, "display_name")?.filter(|name| !name.is_empty()),
            num_uses: params::integer(data, "num_uses")?.unwrap_or(0),
            period: params::duration(data, "period")?.unwrap_or_default(),
        })
    }
}

/// Normalizes requested policy names: trimmed and lowercased, control characters rejected.
pub(super) fn policy_names(names: &[String]) -> Result<Vec<String>, Error> {
    names
        .iter()
        .map(|name| acl::normalize_policy_name(name))
        .collect()
}

/// The creation path of a request.
pub(super) enum CreateKind<'a> {
    /// `auth/token/create`.
    Normal,
    /// `auth/token/create-orphan`: an orphan without needing sudo.
    Orphan,
    /// `auth/token/create/:role_name`.
    Role(&'a str),
}

/// The lifetime limits of a new token, from the request and its role.
struct Limits {
    period: Duration,
    explicit_max_ttl: Duration,
}

/// Handles `create`, `create-orphan` and `create/:role_name`.
pub(super) fn create(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: &Caller,
    txn: &mut dyn Transaction,
    kind: CreateKind<'_>,
) -> Result<Response, Error> {
    let params = CreateParams::parse(request)?;
    let role = match kind {
        CreateKind::Role(name) => Some(load_role(core, ctx, txn, name)?),
        _ => None,
    };
    let sudo = acl::has_sudo(core, caller, &request.path, txn)?;
    check_privileges(&params, caller, sudo)?;
    let policies = child_policies(&params, caller, sudo, role.as_ref())?;
    // Sudo lets a caller pick policies it lacks, but never `root`: that would let any sudo
    // token escalate to root.
    if policies.iter().any(|name| name == ROOT_POLICY) && !caller.is_root() {
        return Err(Error::bad_request(
            "root tokens may not be created without parent token being root",
        ));
    }
    let mut warnings = missing_policy_warnings(core, &policies, txn)?;
    let role_orphan = role.as_ref().is_some_and(|role| role.orphan);
    let orphan = matches!(kind, CreateKind::Orphan) || params.no_parent || role_orphan;
    let limits = limits(&core.config, &params, role.as_ref(), &mut warnings);
    let renewable = params.renewable && role.as_ref().is_none_or(|role| role.renewable);
    let mut path = request.path.trim_end_matches('/').to_owned();
    if let Some(suffix) = role.as_ref().map(|role| role.path_suffix.as_str()) {
        if !suffix.is_empty() {
            path = format!("{path}/{suffix}");
        }
    }

    let ttl = initial_ttl(&core.config, &policies, &params, &limits, &mut warnings);
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    check_parent_unlimited(&view, caller, orphan, ctx.now)?;
    let token = match &params.id {
        Some(id) => Secret::new(id.clone()),
        None => new_token(&mut view),
    };
    let token_hash = store::new_hash(&mut view, token.expose())?;
    if store::get(&view, &token_hash)?.is_some() {
        return Err(Error::bad_request(
            "a token with the requested id already exists",
        ));
    }
    let entry = TokenEntry {
        accessor: crate::ids::base62(view.rng(), ACCESSOR_LEN),
        policies,
        parent: if orphan {
            String::new()
        } else {
            caller.token_hash.clone()
        },
        display_name: display_name(params.display_name.as_deref()),
        meta: params.meta,
        creation_time: ctx.now,
        creation_ttl: ttl.as_secs(),
        explicit_max_ttl: limits.explicit_max_ttl.as_secs(),
        period: limits.period.as_secs(),
        ttl: ttl.as_secs(),
        expire_time: expiry(ctx.now, ttl),
        last_renewal_time: None,
        num_uses: params.num_uses,
        renewable: renewable && !ttl.is_zero(),
        orphan,
        path,
        token_type: String::from("service"),
        role: role.map(|role| role.name).unwrap_or_default(),
        revoke_pending: false,
    };
    store::save(&mut view, &token_hash, &entry)?;
    Ok(auth_response(&token, &entry, warnings))
}

/// Creates a root token (policy `root`, no TTL, orphan) in `view`.
pub(super) fn root_token(view: &mut SecureView<'_>, now: Timestamp) -> Result<Secret, Error> {
    let token = new_token(view);
    let token_hash = store::new_hash(view, token.expose())?;
    let entry = TokenEntry {
        accessor: crate::ids::base62(view.rng(), ACCESSOR_LEN),
        policies: vec![String::from(ROOT_POLICY)],
        display_name: String::from("root"),
        creation_time: now,
        orphan: true,
        path: String::from("auth/token/root"),
        token_type: String::from("service"),
        ..TokenEntry::default()
    };
    store::save(view, &token_hash, &entry)?;
    Ok(token)
}

fn load_role(
    core: &Core,
    ctx: &mut Ctx<'_>,
    txn: &mut dyn Transaction,
    name: &str,
) -> Result<TokenRole, Error> {
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    roles::get(&view, name)?.ok_or_else(|| Error::bad_request(format!("unknown role {name}")))
}

/// Combines request and role limits: a role's period replaces the requested one, and the
/// lower of two explicit maximums wins. Both are capped at the system maximum TTL, with a
/// warning, as Vault does.
fn limits(
    config: &CoreConfig,
    params: &CreateParams,
    role: Option<&TokenRole>,
    warnings: &mut Vec<String>,
) -> Limits {
    let role_period = role.map_or(Duration::ZERO, |role| Duration::from_secs(role.period));
    let role_max = role.map_or(Duration::ZERO, |role| {
        Duration::from_secs(role.explicit_max_ttl)
    });
    let explicit_max_ttl = match (params.explicit_max_ttl, role_max) {
        (requested, Duration::ZERO) => requested,
        (Duration::ZERO, role_max) => role_max,
        (requested, role_max) => requested.min(role_max),
    };
    let period = if role_period.is_zero() {
        params.period
    } else {
        role_period
    };
    let max = config.max_lease_ttl;
    Limits {
        period: cap_at_max("period", period, max, warnings),
        explicit_max_ttl: cap_at_max("explicit_max_ttl", explicit_max_ttl, max, warnings),
    }
}

/// Returns `value` capped at `max`, adding Vault's warning when it was larger.
fn cap_at_max(field: &str, value: Duration, max: Duration, warnings: &mut Vec<String>) -> Duration {
    if value <= max {
        return value;
    }
    warnings.push(format!(
        "{field} of {:?} exceeded the effective max_ttl of {:?}; {field} value is capped \
         accordingly",
        format_go_duration(value),
        format_go_duration(max)
    ));
    max
}

pub(super) fn new_token(view: &mut SecureView<'_>) -> Secret {
    Secret::new(format!(
        "{TOKEN_PREFIX}{}",
        crate::ids::base62(view.rng(), TOKEN_RANDOM_LEN)
    ))
}

/// Rejects a caller whose token has a use limit, as Vault does. A token that spends its last
/// use on this request counts as limited.
///
/// Also rejects a caller whose child (unless an orphan) would have more than
/// [`store::MAX_PARENT_DEPTH`] ancestors, since such a child would never authenticate.
fn check_parent_unlimited(
    view: &SecureView<'_>,
    caller: &Caller,
    orphan: bool,
    now: Timestamp,
) -> Result<(), Error> {
    let Some(parent) = store::get(view, &caller.token_hash)? else {
        return Err(Error::bad_request(
            "use limited tokens cannot create child tokens",
        ));
    };
    if parent.num_uses > 0 || parent.revoke_pending {
        return Err(Error::bad_request(
            "use limited tokens cannot create child tokens",
        ));
    }
    if orphan {
        return Ok(());
    }
    let depth = store::live_ancestors(view, &parent, now)?.unwrap_or(store::MAX_PARENT_DEPTH);
    if depth >= store::MAX_PARENT_DEPTH {
        return Err(Error::bad_request(format!(
            "token chain too deep: a token may have at most {} ancestors; create an orphan \
             token instead",
            store::MAX_PARENT_DEPTH
        )));
    }
    Ok(())
}

fn check_privileges(params: &CreateParams, caller: &Caller, sudo: bool) -> Result<(), Error> {
    if let Some(id) = &params.id {
        if !caller.is_root() {
            return Err(Error::bad_request(
                "root privileges required to specify token id",
            ));
        }
        if id.contains('.') {
            return Err(Error::bad_request("token ids may not contain a '.'"));
        }
    }
    if params.no_parent && !sudo {
        return Err(Error::bad_request(
            "root or sudo privileges required to create orphan token",
        ));
    }
    if !params.period.is_zero() && !sudo {
        return Err(Error::bad_request(
            "root or sudo privileges required to create periodic token",
        ));
    }
    Ok(())
}

/// Chooses the new token's policies: the requested ones or else the caller's (or the role's allowed
/// ones), plus `default` unless opted out. Requested policies must be a subset of the role's
/// allowed policies when it has some, and otherwise of the caller's unless the caller is root
/// or has sudo. A list holding `root` is just `["root"]`.
fn child_policies(
    params: &CreateParams,
    caller: &Caller,
    sudo: bool,
    role: Option<&TokenRole>,
) -> Result<Vec<String>, Error> {
    let requested = params.policies.as_ref().filter(|names| !names.is_empty());
    let allowed_by_role = role
        .map(|role| role.allowed_policies.as_slice())
        .filter(|allowed| !allowed.is_empty());
    let mut policies: Vec<String> = match (requested, allowed_by_role) {
        (Some(requested), Some(allowed)) => {
            let permitted = |name: &String| name == DEFAULT_POLICY || allowed.contains(name);
            if !requested.iter().all(permitted) {
                return Err(Error::bad_request(
                    "token policies must be subset of the role's allowed policies",
                ));
            }
            requested.clone()
        }
        (None, Some(allowed)) => allowed.to_vec(),
        (Some(requested), None) => {
            let permitted =
                |name: &String| name == DEFAULT_POLICY || caller.policies.contains(name);
            if !sudo && !requested.iter().all(permitted) {
                return Err(Error::bad_request(
                    "child policies must be subset of parent",
                ));
            }
            requested.clone()
        }
        (None, None) => caller.policies.clone(),
    };
    if policies.iter().any(|name| name == RESPONSE_WRAPPING_POLICY) {
        return Err(Error::bad_request(format!(
            "cannot assign policy {RESPONSE_WRAPPING_POLICY:?}: only response-wrapping tokens \
             may have it"
        )));
    }
    if let Some(role) = role {
        if let Some(name) = policies
            .iter()
            .find(|name| role.disallowed_policies.contains(name))
        {
            return Err(Error::bad_request(format!(
                "token policy {name:?} is disallowed by this role"
            )));
        }
    }
    if !params.no_default_policy {
        policies.push(String::from(DEFAULT_POLICY));
    } else {
        policies.retain(|name| name != DEFAULT_POLICY);
    }
    if policies.iter().any(|name| name == ROOT_POLICY) {
        return Ok(vec![String::from(ROOT_POLICY)]);
    }
    policies.sort();
    policies.dedup();
    Ok(policies)
}

fn missing_policy_warnings(
    core: &Core,
    policies: &[String],
    txn: &dyn Transaction,
) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    for name in policies {
        if name == ROOT_POLICY || name == DEFAULT_POLICY {
            continue;
        }
        if core.policies.get(core, txn, name)?.is_none() {
            warnings.push(format!("Policy {name:?} does not exist"));
        }
    }
    Ok(warnings)
}

/// The TTL of a new token. A periodic token lives one period; a root token that requests no
/// TTL never expires; any other token gets its TTL or the default, capped by the system maximum
/// and by its explicit maximum. A requested TTL over that cap gets a warning.
fn initial_ttl(
    config: &CoreConfig,
    policies: &[String],
    params: &CreateParams,
    limits: &Limits,
    warnings: &mut Vec<String>,
) -> Duration {
    let explicit_max = limits.explicit_max_ttl;
    let cap = |ttl: Duration| {
        if explicit_max.is_zero() {
            ttl
        } else {
            ttl.min(explicit_max)
        }
    };
    if !limits.period.is_zero() {
        return cap(limits.period);
    }
    let requested = params.ttl.filter(|ttl| !ttl.is_zero());
    if requested.is_none() && policies.iter().any(|name| name == ROOT_POLICY) {
        return Duration::ZERO;
    }
    let effective_max = cap(config.max_lease_ttl);
    match requested {
        Some(ttl) => cap_at_max("ttl", ttl, effective_max, warnings),
        None => config.default_lease_ttl.min(effective_max),
    }
}

/// Computes the TTL of a renewal at `now`, or a 400 when the token cannot be renewed.
pub(super) fn renewed_ttl(
    config: &CoreConfig,
    entry: &TokenEntry,
    increment: Option<Duration>,
    now: Timestamp,
) -> Result<Duration, Error> {
    if !entry.renewable || entry.ttl == 0 {
        return Err(Error::bad_request("lease is not renewable"));
    }
    let age = now.saturating_since(entry.creation_time);
    let mut ttl = if entry.period > 0 {
        Duration::from_secs(entry.period).min(config.max_lease_ttl)
    } else {
        let requested = increment.filter(|ttl| !ttl.is_zero());
        let ttl = requested.unwrap_or(Duration::from_secs(entry.creation_ttl));
        ttl.min(config.max_lease_ttl.saturating_sub(age))
    };
    if entry.explicit_max_ttl > 0 {
        ttl = ttl.min(Duration::from_secs(entry.explicit_max_ttl).saturating_sub(age));
    }
    // A zero TTL would mean "never expires", so a token at its maximum cannot be renewed.
    if ttl.as_secs() == 0 {
        return Err(Error::bad_request(
            "token is at its maximum TTL and cannot be renewed",
        ));
    }
    Ok(ttl)
}

/// When a lease of `ttl` from `now` ends, or `None` for a zero TTL.
pub(super) fn expiry(now: Timestamp, ttl: Duration) -> Option<Timestamp> {
    (!ttl.is_zero()).then(|| now.saturating_add(ttl))
}

/// Vault's display names: `token`, or `token-` and the requested name with every run of
/// characters other than letters, digits and `-` turned into one `-`.
fn display_name(requested: Option<&str>) -> String {
    let Some(requested) = requested else {
        return String::from("token");
    };
    let mut full = String::new();
    for c in format!("token-{requested}").chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            full.push(c);
        } else if !full.ends_with('-') {
            full.push('-');
        }
    }
    full.trim_end_matches('-').to_owned()
}
