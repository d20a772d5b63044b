//! Tokens issued on behalf of other parts of the server: auth method logins and response
//! wrapping.

use std::collections::BTreeMap;
use std::time::Duration;

use super::create::{ACCESSOR_LEN, expiry, new_token};
use super::store::{self, TokenEntry};
use crate::Core;
use crate::acl::{DEFAULT_POLICY, ROOT_POLICY};
use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Auth, Response, Secret};
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
    /// Makes the token periodic; zero for none.
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
        params.period
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

    #[test]
    fn wrapping_token_gets_built_in_policy() {
        let mut node = Node::new();
        let params = TokenParams {
            policies: vec![String::from(crate::acl::RESPONSE_WRAPPING_POLICY)],
            no_default_policy: true,
            path: String::from("sys/wrapping/wrap"),
            ttl: Some(Duration::from_secs(300)),
            num_uses: 1,
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
        assert_eq!(auth.policies, ["response-wrapping"]);
        assert!(!auth.renewable);
        let request = Request::new(Operation::Update, "sys/capabilities-self")
            .with_data(serde_json::json!({"paths": ["cubbyhole/response"]}))
            .with_token(auth.client_token.expose());
        // capabilities-self is not in the wrapping policy, so even this first use is denied.
        assert_eq!(node.fail(request).status(), 403);
        let caps = node
            .storage
            .read(|txn| {
                crate::acl::capabilities(&node.core, &auth.policies, "cubbyhole/response", txn)
            })
            .unwrap()
            .unwrap();
        assert_eq!(caps.names(), ["create", "read"]);
    }
}
