//! Tokens issued, inspected and revoked on behalf of other parts of the server: auth method
//! logins and response wrapping.

use std::collections::BTreeMap;
use std::time::Duration;

use super::create::{ACCESSOR_LEN, expiry, new_token};
use super::store::{self, TokenEntry};
use crate::Core;
use crate::acl::{DEFAULT_POLICY, ROOT_POLICY};
use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Auth, Caller, Response, Secret};
use crate::time::Timestamp;

/// The properties of a token that an auth method or the wrapping code issues. Such tokens are
/// orphans, as Vault's login tokens are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenParams {
    /// Policies; `default` is added unless `no_default_policy` is set.
    pub policies: Vec<String>,
    /// Leaves out the `default` policy.
    pub no_default_policy: bool,
    /// The display name, such as `userpass-alice`.
    pub display_name: String,
    /// Metadata returned in `auth.metadata` and by lookups.
    pub meta: BTreeMap<String, String>,
    /// The path that issued the token, such as `auth/userpass/login/alice`.
    pub path: String,
    /// The TTL; `None` or zero gives the system default. It is capped by `max_lease_ttl`.
    pub ttl: Option<Duration>,
    /// A hard cap on the TTL, renewals included; zero for none.
    pub explicit_max_ttl: Duration,
    /// Makes the token periodic; zero for none. It is capped by `max_lease_ttl`.
    pub period: Duration,
    /// Uses allowed; 0 for unlimited. Wrapping tokens have 1.
    pub num_uses: u64,
    /// Whether the token can be renewed.
    pub renewable: bool,
}

/// Issues a token in `view` and returns its `auth` block, which holds the token.
pub fn issue_token(
    core: &Core,
    view: &mut SecureView<'_>,
    now: Timestamp,
    params: &TokenParams,
) -> Result<Auth, Error> {
    let policies = policies(params);
    let ttl = ttl(core, params);
    let token = new_token(view);
    let token_hash = store::new_hash(view, token.expose())?;
    let entry = TokenEntry {
        accessor: crate::ids::base62(view.rng(), ACCESSOR_LEN),
        policies,
        display_name: params.display_name.clone(),
        meta: params.meta.clone(),
        creation_time: now,
        creation_ttl: ttl.as_secs(),
        explicit_max_ttl: params.explicit_max_ttl.as_secs(),
        period: params.period.as_secs(),
        ttl: ttl.as_secs(),
        expire_time: expiry(now, ttl),
        num_uses: params.num_uses,
        renewable: params.renewable && !ttl.is_zero(),
        orphan: true,
        path: params.path.clone(),
        token_type: String::from("service"),
        ..TokenEntry::default()
    };
    store::save(view, &token_hash, &entry)?;
    auth_of(&token, &entry)
}

/// A live token as other modules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The caller the token authenticates, with its salted hash.
    pub caller: Caller,
    /// When the token was created.
    pub creation_time: Timestamp,
    /// When it expires; `None` for never.
    pub expire_time: Option<Timestamp>,
    /// The TTL given at creation.
    pub creation_ttl: Duration,
    /// Uses left; 0 for unlimited.
    pub num_uses: u64,
}

/// Looks up a live token without spending a use, as `sys/wrapping/lookup` needs.
pub fn token_info(
    view: &SecureView<'_>,
    token: &str,
    now: Timestamp,
) -> Result<Option<TokenInfo>, Error> {
    let Some((token_hash, entry)) = store::find(view, token)? else {
        return Ok(None);
    };
    if !store::is_valid(view, &entry, now)? {
        return Ok(None);
    }
    Ok(Some(TokenInfo {
        caller: entry.caller(&token_hash),
        creation_time: entry.creation_time,
        expire_time: entry.expire_time,
        creation_ttl: Duration::from_secs(entry.creation_ttl),
        num_uses: entry.num_uses,
    }))
}

/// Revokes a token and its children, and returns whether it existed. Unwrapping calls it to
/// end the wrapping token.
pub fn revoke_token(view: &mut SecureView<'_>, token: &str) -> Result<bool, Error> {
    let Some((token_hash, _)) = store::find(view, token)? else {
        return Ok(false);
    };
    store::revoke_tree(view, &token_hash)?;
    Ok(true)
}

/// Revokes the token with `accessor` and its children, and returns whether it existed.
/// Replication voids the wrapping tokens of unused activation tokens this way.
pub fn revoke_accessor(view: &mut SecureView<'_>, accessor: &str) -> Result<bool, Error> {
    let Some(token_hash) = store::hash_for_accessor(view, accessor)? else {
        return Ok(false);
    };
    store::revoke_tree(view, &token_hash)?;
    Ok(true)
}

fn policies(params: &TokenParams) -> Vec<String> {
    let mut policies: Vec<String> = params
        .policies
        .iter()
        .map(|name| name.to_lowercase())
        .collect();
    if !params.no_default_policy {
        policies.push(String::from(DEFAULT_POLICY));
    }
    if policies.iter().any(|name| name == ROOT_POLICY) {
        return vec![String::from(ROOT_POLICY)];
    }
    policies.sort();
    policies.dedup();
    policies
}

fn ttl(core: &Core, params: &TokenParams) -> Duration {
    let ttl = if params.period.is_zero() {
        let requested = params.ttl.filter(|ttl| !ttl.is_zero());
        requested
            .unwrap_or(core.config.default_lease_ttl)
            .min(core.config.max_lease_ttl)
    } else {
        params.period.min(core.config.max_lease_ttl)
    };
    if params.explicit_max_ttl.is_zero() {
        ttl
    } else {
        ttl.min(params.explicit_max_ttl)
    }
}

fn auth_of(token: &Secret, entry: &TokenEntry) -> Result<Auth, Error> {
    match super::response::auth_response(token, entry, Vec::new()) {
        Response::Logical(logical) => logical
            .auth
            .ok_or_else(|| Error::internal("failed to build the auth block of a new token")),
        _ => Err(Error::internal(
            "failed to build the auth block of a new token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::request::{Operation, Request};
    use crate::storage::Storage;
    use crate::token::testing::{Node, data_of};

    #[test]
    fn issued_login_token_authenticates() {
        let mut node = Node::new();
        let params = TokenParams {
            policies: vec![String::from("Web")],
            display_name: String::from("userpass-alice"),
            path: String::from("auth/userpass/login/alice"),
            ttl: Some(Duration::from_secs(600)),
            renewable: true,
            ..TokenParams::default()
        };
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        let auth = node
            .storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, rng)?;
                issue_token(core, &mut view, now, &params)
            })
            .unwrap();
        assert_eq!(auth.policies, ["default", "web"]);
        assert_eq!(auth.lease_duration, 600);
        assert!(auth.orphan);
        let request = Request::new(Operation::Read, "auth/token/lookup-self")
            .with_token(auth.client_token.expose());
        let data = data_of(node.ok(request));
        assert_eq!(data["display_name"], "userpass-alice");
        assert_eq!(data["path"], "auth/userpass/login/alice");
    }

    fn issue(node: &mut Node, params: &TokenParams) -> Auth {
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        node.storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, rng)?;
                issue_token(core, &mut view, now, params)
            })
            .unwrap()
    }

    fn wrapping_params() -> TokenParams {
        TokenParams {
            policies: vec![String::from(crate::acl::RESPONSE_WRAPPING_POLICY)],
            no_default_policy: true,
            path: String::from("sys/wrapping/wrap"),
            ttl: Some(Duration::from_secs(300)),
            num_uses: 1,
            ..TokenParams::default()
        }
    }

    fn info_of(node: &mut Node, token: &str) -> Option<TokenInfo> {
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        node.storage
            .write(|txn| {
                let view = core.barrier.view(txn, rng)?;
                token_info(&view, token, now)
            })
            .unwrap()
    }

    #[test]
    fn wrapping_token_gets_built_in_policy() {
        let mut node = Node::new();
        let auth = issue(&mut node, &wrapping_params());
        assert_eq!(auth.policies, ["response-wrapping"]);
        assert!(!auth.renewable);
        let caps = node
            .storage
            .read(|txn| {
                crate::acl::capabilities(&node.core, &auth.policies, "cubbyhole/response", txn)
            })
            .unwrap()
            .unwrap();
        assert_eq!(caps.names(), ["create", "read"]);

        // The wrapping policy does not cover capabilities-self, and the denied request still
        // spends the token's only use.
        let token = auth.client_token.expose().to_owned();
        let request = Request::new(Operation::Update, "sys/capabilities-self")
            .with_data(serde_json::json!({"paths": ["cubbyhole/response"]}))
            .with_token(token.clone());
        assert_eq!(node.fail(request).status(), 403);
        assert_eq!(info_of(&mut node, &token), None);
    }

    #[test]
    fn issued_token_can_be_inspected_and_revoked() {
        let mut node = Node::new();
        let auth = issue(&mut node, &wrapping_params());
        let token = auth.client_token.expose().to_owned();
        let info = info_of(&mut node, &token).unwrap();
        assert_eq!(info.creation_ttl, Duration::from_secs(300));
        assert_eq!(info.num_uses, 1);
        assert_eq!(info.caller.policies, ["response-wrapping"]);

        let (core, rng) = (&node.core, &mut node.rng);
        let (revoked, again) = node
            .storage
            .write(|txn| {
                let mut view = core.barrier.view(txn, rng)?;
                let revoked = revoke_token(&mut view, &token)?;
                let again = revoke_token(&mut view, &token)?;
                Ok::<_, Error>((revoked, again))
            })
            .unwrap();
        assert!(revoked);
        assert!(!again);
        assert_eq!(info_of(&mut node, &token), None);
    }
}
