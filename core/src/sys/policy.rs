//! Policies and capability queries.
//!
//! `sys/policy` is the legacy API (`rules` in reads), `sys/policies/acl` the newer one
//! (`policy` in reads); both manage the same stored policies.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::Core;
use crate::acl::{self, DEFAULT_POLICY, RESPONSE_WRAPPING_POLICY, ROOT_POLICY, parse_policy};
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

/// The policy API a request uses. The two differ in field names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Legacy,
    Acl,
}

/// Serves `sys/policy`, `sys/policies/acl` and `sys/capabilities*`, or returns `None` for any other path.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let path = request.path.as_str();
    let trimmed = path.trim_end_matches('/');
    let result = if trimmed == "sys/policy" {
        list(core, request, Api::Legacy, txn)
    } else if trimmed == "sys/policies/acl" {
        list(core, request, Api::Acl, txn)
    } else if let Some(name) = path.strip_prefix("sys/policy/") {
        one(core, ctx, request, Api::Legacy, name, txn)
    } else if let Some(name) = path.strip_prefix("sys/policies/acl/") {
        one(core, ctx, request, Api::Acl, name, txn)
    } else if trimmed == "sys/capabilities-self" {
        capabilities_self(core, request, caller, txn)
    } else if trimmed == "sys/capabilities" || trimmed == "sys/capabilities-accessor" {
        capabilities_other(core, ctx, request, txn)
    } else {
        return None;
    };
    Some(result)
}

fn list(
    core: &Core,
    request: &Request,
    api: Api,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if !matches!(request.operation, Operation::Read | Operation::List) {
        return Err(Error::unsupported_operation());
    }
    let mut names = core.policies.names(txn)?;
    names.push(String::from(ROOT_POLICY));
    names.sort();
    let mut data = Map::new();
    data.insert("keys".into(), json!(names));
    if api == Api::Legacy {
        data.insert("policies".into(), json!(names));
    }
    Ok(Response::data(data))
}

fn one(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    api: Api,
    name: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let name = acl::normalize_policy_name(name.trim_end_matches('/'))?;
    if name.is_empty() {
        return Err(Error::bad_request("missing policy name"));
    }
    match request.operation {
        Operation::Read => read(core, api, &name, txn),
        Operation::Update => write(core, ctx, request, api, &name, txn),
        Operation::Delete => delete(core, ctx, &name, txn),
        _ => Err(Error::unsupported_operation()),
    }
}

fn read(core: &Core, api: Api, name: &str, txn: &mut dyn Transaction) -> Result<Response, Error> {
    let text_key = match api {
        Api::Legacy => "rules",
        Api::Acl => "policy",
    };
    let text = if name == ROOT_POLICY {
        // The root policy has no rules: it short-circuits evaluation.
        String::new()
    } else {
        let policy = core.policies.get(core, txn, name)?;
        policy.ok_or_else(Error::not_found)?.raw.clone()
    };
    let mut data = Map::new();
    data.insert("name".into(), json!(name));
    data.insert(text_key.into(), json!(text));
    Ok(Response::data(data))
}

fn write(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    api: Api,
    name: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if name == ROOT_POLICY || name == RESPONSE_WRAPPING_POLICY {
        return Err(Error::bad_request(format!("cannot update {name} policy")));
    }
    let text = policy_text(request, api)?;
    let policy = parse_policy(name, &text)?;
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    core.policies.put(&mut view, &policy)?;
    Ok(Response::NoContent)
}

/// Extracts the policy text of a write: `policy` (or `rules` on the legacy API). The newer API
/// also accepts it base64-encoded.
fn policy_text(request: &Request, api: Api) -> Result<String, Error> {
    let value = match (request.data.get("policy"), api) {
        (Some(value), _) => Some(value),
        (None, Api::Legacy) => request.data.get("rules"),
        (None, Api::Acl) => None,
    };
    let text = match value {
        Some(Value::String(text)) => text.clone(),
        Some(_) => return Err(Error::bad_request("invalid policy: expected a string")),
        None => return Err(Error::bad_request("missing policy: send the policy text")),
    };
    if text.trim().is_empty() {
        return Err(Error::bad_request(
            "missing policy: the policy text is empty",
        ));
    }
    if api == Api::Acl {
        if let Some(decoded) = decode_base64(&text) {
            return Ok(decoded);
        }
    }
    Ok(text)
}

fn decode_base64(text: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn delete(
    core: &Core,
    ctx: &mut Ctx<'_>,
    name: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    if name == ROOT_POLICY || name == RESPONSE_WRAPPING_POLICY {
        return Err(Error::bad_request(format!("cannot delete {name} policy")));
    }
    if name == DEFAULT_POLICY {
        return Err(Error::bad_request("cannot delete default policy"));
    }
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    core.policies.delete(&mut view, name)?;
    Ok(Response::NoContent)
}

fn capabilities_self(
    core: &Core,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let caller = caller.ok_or_else(Error::permission_denied)?;
    capabilities_response(core, &caller.policies, &requested_paths(request)?, txn)
}

fn capabilities_other(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let paths = requested_paths(request)?;
    let field = |key: &str| match request.data.get(key) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        _ => Err(Error::bad_request(format!("missing {key}"))),
    };
    let now = ctx.now;
    let view = core.barrier.view(txn, &mut *ctx.rng)?;
    let policies = if request.path.trim_end_matches('/') == "sys/capabilities-accessor" {
        let accessor = field("accessor")?;
        crate::token::policies_of_accessor(&view, &accessor, now)?
            .ok_or_else(|| Error::bad_request("invalid accessor"))?
    } else {
        let token = zeroize::Zeroizing::new(field("token")?);
        crate::token::policies_of_token(&view, &token, now)?
            .ok_or_else(|| Error::bad_request("invalid token"))?
    };
    drop(view);
    capabilities_response(core, &policies, &paths, txn)
}

/// Reads the `paths` list, or the older single `path`.
fn requested_paths(request: &Request) -> Result<Vec<String>, Error> {
    let value = request
        .data
        .get("paths")
        .or_else(|| request.data.get("path"));
    let paths: Vec<String> = match value {
        Some(Value::String(path)) => vec![path.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if paths.is_empty() {
        return Err(Error::bad_request("missing paths: send a list of paths"));
    }
    Ok(paths
        .into_iter()
        .map(|path| path.trim_start_matches('/').to_owned())
        .collect())
}

fn capabilities_response(
    core: &Core,
    policies: &[String],
    paths: &[String],
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    let mut data = Map::new();
    for path in paths {
        let names = acl::capabilities(core, policies, path, txn)?.names();
        if paths.len() == 1 {
            data.insert("capabilities".into(), json!(names));
        }
        data.insert(path.clone(), json!(names));
    }
    Ok(Response::data(data))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::request::{Operation, Response};
    use crate::token::testing::{Node, data_of};

    #[test]
    fn list_includes_root_and_default() {
        let mut node = Node::new();
        node.put_policy("web", r#"path "a" { capabilities = ["read"] }"#);
        let request = node.root_request(Operation::Read, "sys/policy", json!({}));
        let data = data_of(node.ok(request));
        assert_eq!(data["policies"], json!(["default", "root", "web"]));
        assert_eq!(data["keys"], data["policies"]);
        let request = node.root_request(Operation::List, "sys/policies/acl/", json!({}));
        let data = data_of(node.ok(request));
        assert_eq!(data["keys"], json!(["default", "root", "web"]));
        assert!(!data.contains_key("policies"));
    }

    #[test]
    fn reads_return_text_as_written() {
        let mut node = Node::new();
        let text = r#"{"path": {"secret/*": {"capabilities": ["read"]}}}"#;
        node.put_policy("Web", text);
        let request = node.root_request(Operation::Read, "sys/policy/web", json!({}));
        let data = data_of(node.ok(request));
        assert_eq!(data["name"], "web");
        assert_eq!(data["rules"], text);
        let request = node.root_request(Operation::Read, "sys/policies/acl/web", json!({}));
        let data = data_of(node.ok(request));
        assert_eq!(data.len(), 2);
        assert_eq!(data["policy"], text);
    }

    #[test]
    fn acl_api_accepts_base64_text() {
        let mut node = Node::new();
        let text = r#"path "secret/*" { capabilities = ["read"] }"#;
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
        let request = node.root_request(
            Operation::Update,
            "sys/policies/acl/b64",
            json!({ "policy": encoded }),
        );
        assert_eq!(node.ok(request), Response::NoContent);
        let request = node.root_request(Operation::Read, "sys/policies/acl/b64", json!({}));
        assert_eq!(data_of(node.ok(request))["policy"], text);
    }

    #[test]
    fn odd_names_are_accepted() {
        let mut node = Node::new();
        node.put_policy("['testpolicy']", r#"path "a" { capabilities = ["read"] }"#);
        let request = node.root_request(Operation::Read, "sys/policy/['testpolicy']", json!({}));
        assert_eq!(data_of(node.ok(request))["name"], "['testpolicy']");
    }

    #[test]
    fn policy_names_are_trimmed() {
        let mut node = Node::new();
        let text = json!({"policy": r#"path "a" { capabilities = ["read"] }"#});
        let request = node.root_request(Operation::Update, "sys/policy/ web ", text.clone());
        assert_eq!(node.ok(request), Response::NoContent);
        let request = node.root_request(Operation::Read, "sys/policy", json!({}));
        assert_eq!(
            data_of(node.ok(request))["policies"],
            json!(["default", "root", "web"])
        );
        for name in ["root ", " Root", "root\t"] {
            let path = format!("sys/policy/{name}");
            let request = node.root_request(Operation::Update, &path, text.clone());
            let error = node.fail(request);
            assert_eq!(error.status(), 400, "{name:?}");
        }
        let request = node.root_request(Operation::Update, "sys/policy/root ", text);
        assert_eq!(
            node.fail(request).to_string(),
            "400: cannot update root policy"
        );
    }

    #[test]
    fn policy_names_with_control_characters_are_rejected() {
        let mut node = Node::new();
        let text = json!({"policy": r#"path "a" { capabilities = ["read"] }"#});
        for name in ["web\0", "we\nb", "\u{7f}web"] {
            let path = format!("sys/policies/acl/{name}");
            let request = node.root_request(Operation::Update, &path, text.clone());
            let error = node.fail(request);
            assert_eq!(error.status(), 400, "{name:?}");
            assert!(error.to_string().contains("control character"), "{error}");
        }
        let request = node.root_request(Operation::Read, "sys/policy", json!({}));
        assert_eq!(
            data_of(node.ok(request))["policies"],
            json!(["default", "root"])
        );
    }

    #[test]
    fn invalid_policy_is_rejected_with_reason() {
        let mut node = Node::new();
        let request = node.root_request(
            Operation::Update,
            "sys/policy/bad",
            json!({"policy": r#"path "a" { capabilities = ["fly"] }"#}),
        );
        let error = node.fail(request);
        assert_eq!(error.to_string(), "400: invalid capability \"fly\"");
        let request = node.root_request(Operation::Read, "sys/policy/bad", json!({}));
        assert_eq!(node.fail(request).status(), 404);
    }

    #[test]
    fn built_in_policies_are_protected() {
        let mut node = Node::new();
        let text = json!({"policy": r#"path "a" { capabilities = ["read"] }"#});
        let request = node.root_request(Operation::Update, "sys/policy/root", text.clone());
        assert_eq!(node.fail(request).status(), 400);
        let request = node.root_request(Operation::Delete, "sys/policy/root", json!({}));
        assert_eq!(node.fail(request).status(), 400);
        let request = node.root_request(Operation::Delete, "sys/policies/acl/default", json!({}));
        assert_eq!(node.fail(request).status(), 400);
        let request = node.root_request(Operation::Update, "sys/policy/default", text);
        assert_eq!(node.ok(request), Response::NoContent);
    }

    #[test]
    fn deleted_policy_reads_as_missing() {
        let mut node = Node::new();
        node.put_policy("gone", r#"path "a" { capabilities = ["read"] }"#);
        let request = node.root_request(Operation::Delete, "sys/policies/acl/gone", json!({}));
        assert_eq!(node.ok(request), Response::NoContent);
        let request = node.root_request(Operation::Read, "sys/policies/acl/gone", json!({}));
        assert_eq!(node.fail(request).status(), 404);
    }

    #[test]
    fn default_policy_is_written_at_initialisation() {
        let mut node = Node::new();
        let request = node.root_request(Operation::Read, "sys/policy/default", json!({}));
        let rules = data_of(node.ok(request))["rules"].clone();
        assert!(rules.as_str().unwrap().contains("auth/token/lookup-self"));
    }
}
