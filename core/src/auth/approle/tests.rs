use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::auth::testing::{anonymous, failure, node_with, root, try_root};
use crate::request::Operation::{Delete, List, Read, Update};
use crate::request::{Auth, Response};
use crate::storage::Partition;
use crate::token::testing::{Node, auth_of, data_of};

fn localhost() -> Option<IpAddr> {
    Some("127.0.0.1".parse().unwrap())
}

fn with_role(body: Value) -> Node {
    let mut node = node_with("approle", "approle", false);
    root(&mut node, Update, "auth/approle/role/web", body);
    node
}

fn role_id(node: &mut Node, role: &str) -> String {
    let path = format!("auth/approle/role/{role}/role-id");
    let data = data_of(root(node, Read, &path, json!({})));
    data["role_id"].as_str().unwrap().to_owned()
}

fn new_secret_id(node: &mut Node, role: &str, body: Value) -> Map<String, Value> {
    let path = format!("auth/approle/role/{role}/secret-id");
    data_of(root(node, Update, &path, body))
}

fn login(
    node: &mut Node,
    role_id: &str,
    secret_id: &str,
    from: Option<IpAddr>,
) -> Result<Auth, (u16, Vec<String>)> {
    let body = json!({"role_id": role_id, "secret_id": secret_id});
    match anonymous(node, "auth/approle/login", body, from) {
        Ok(response) => Ok(auth_of(response)),
        Err(error) => Err(failure(Err(error))),
    }
}

fn text(data: &Map<String, Value>, field: &str) -> String {
    data[field].as_str().unwrap().to_owned()
}

#[test]
fn login_returns_auth_with_role_name() {
    let mut node = with_role(json!({"token_policies": "app", "token_ttl": "1h"}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({}));
    let auth = login(
        &mut node,
        &role_id,
        &text(&secret, "secret_id"),
        localhost(),
    )
    .unwrap();
    assert_eq!(auth.policies, ["app", "default"]);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable);
    assert_eq!(auth.metadata.unwrap()["role_name"], json!("web"));
    assert!(!auth.client_token.expose().is_empty());
}

#[test]
fn one_use_secret_id_logs_in_once() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({"num_uses": 1}));
    assert_eq!(secret["secret_id_num_uses"], json!(1));
    let secret_id = text(&secret, "secret_id");
    assert!(login(&mut node, &role_id, &secret_id, None).is_ok());
    let again = login(&mut node, &role_id, &secret_id, None).unwrap_err();
    assert_eq!(again, (400, vec!["invalid role or secret ID".to_owned()]));
    let list = try_root(
        &mut node,
        List,
        "auth/approle/role/web/secret-id",
        json!({}),
    );
    assert_eq!(failure(list).0, 404);
}

#[test]
fn limited_secret_id_counts_down() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({"num_uses": 3}));
    let secret_id = text(&secret, "secret_id");
    assert!(login(&mut node, &role_id, &secret_id, None).is_ok());
    let path = "auth/approle/role/web/secret-id/lookup";
    let lookup = data_of(root(
        &mut node,
        Update,
        path,
        json!({"secret_id": secret_id}),
    ));
    assert_eq!(lookup["secret_id_num_uses"], json!(2));
}

#[test]
fn wrong_role_id_and_wrong_secret_id_are_indistinguishable() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let secret_id = text(&new_secret_id(&mut node, "web", json!({})), "secret_id");
    let wrong_role = login(&mut node, "not-a-role-id", &secret_id, None).unwrap_err();
    let wrong_secret = login(&mut node, &role_id, "not-a-secret-id", None).unwrap_err();
    assert_eq!(wrong_role.0, 400);
    assert_eq!(wrong_role.1, ["invalid role or secret ID"]);
    assert_eq!(wrong_secret, wrong_role);
}

#[test]
fn local_secret_ids_are_written_to_local_partition() {
    let mut node = with_role(json!({"local_secret_ids": true}));
    let role_id = role_id(&mut node, "web");
    let secret_id = text(&new_secret_id(&mut node, "web", json!({})), "secret_id");
    let is_secret_key = |key: &String| {
        key.starts_with("auth/") && (key.contains("/secret_id/") || key.contains("/accessor/"))
    };
    let shared = node.storage.dump(Partition::Shared);
    assert!(!shared.iter().any(|(key, _)| is_secret_key(key)));
    let local = node.storage.dump(Partition::Local);
    assert_eq!(
        local.iter().filter(|(key, _)| is_secret_key(key)).count(),
        2
    );
    assert!(shared.iter().any(|(key, _)| key.ends_with("/role/web")));
    assert!(login(&mut node, &role_id, &secret_id, None).is_ok());
    let read = data_of(root(&mut node, Read, "auth/approle/role/web", json!({})));
    assert_eq!(read["local_secret_ids"], json!(true));
}

#[test]
fn shared_secret_ids_are_written_to_shared_partition() {
    let mut node = with_role(json!({}));
    new_secret_id(&mut node, "web", json!({}));
    let shared = node.storage.dump(Partition::Shared);
    assert!(shared.iter().any(|(key, _)| key.contains("/secret_id/")));
    let local = node.storage.dump(Partition::Local);
    assert!(!local.iter().any(|(key, _)| key.contains("/secret_id/")));
}

#[test]
fn local_secret_ids_cannot_change_after_creation() {
    let mut node = with_role(json!({}));
    let body = json!({"local_secret_ids": true});
    let result = try_root(&mut node, Update, "auth/approle/role/web", body);
    assert_eq!(failure(result).0, 400);
}

#[test]
fn cidr_bound_secret_id_is_refused_from_another_address() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({"cidr_list": ["127.0.0.1/32"]}));
    let secret_id = text(&secret, "secret_id");
    let elsewhere = Some("10.0.0.7".parse().unwrap());
    let (status, messages) = login(&mut node, &role_id, &secret_id, elsewhere).unwrap_err();
    assert_eq!(status, 400);
    assert!(
        messages[0].contains("CIDR restrictions on the secret ID"),
        "{messages:?}"
    );
    assert!(login(&mut node, &role_id, &secret_id, None).is_err());
    assert!(login(&mut node, &role_id, &secret_id, localhost()).is_ok());
}

#[test]
fn role_cidr_binding_applies_without_secret_id() {
    let body = json!({"bind_secret_id": false, "secret_id_bound_cidrs": "10.0.0.0/8"});
    let mut node = with_role(body);
    let role_id = role_id(&mut node, "web");
    let inside = Some("10.1.2.3".parse().unwrap());
    let response = anonymous(
        &mut node,
        "auth/approle/login",
        json!({"role_id": role_id}),
        inside,
    );
    assert!(response.is_ok(), "{response:?}");
    let outside = anonymous(
        &mut node,
        "auth/approle/login",
        json!({"role_id": role_id}),
        localhost(),
    );
    let (status, messages) = failure(outside);
    assert_eq!(status, 400);
    assert!(
        messages[0].contains("CIDR restrictions on the role"),
        "{messages:?}"
    );
}

#[test]
fn role_without_any_constraint_is_rejected() {
    let mut node = node_with("approle", "approle", false);
    let result = try_root(
        &mut node,
        Update,
        "auth/approle/role/web",
        json!({"bind_secret_id": false}),
    );
    let (status, messages) = failure(result);
    assert_eq!(status, 400);
    assert!(
        messages[0].starts_with("at least one constraint"),
        "{messages:?}"
    );
}

#[test]
fn role_id_can_be_read_and_set() {
    let mut node = with_role(json!({}));
    let generated = role_id(&mut node, "web");
    assert_eq!(generated.len(), 36);
    let body = json!({"role_id": "custom-id"});
    root(&mut node, Update, "auth/approle/role/web/role-id", body);
    assert_eq!(role_id(&mut node, "web"), "custom-id");
    let secret_id = text(&new_secret_id(&mut node, "web", json!({})), "secret_id");
    assert!(login(&mut node, "custom-id", &secret_id, None).is_ok());
    assert!(login(&mut node, &generated, &secret_id, None).is_err());
}

#[test]
fn role_id_in_use_by_another_role_is_rejected() {
    let mut node = with_role(json!({"role_id": "shared-id"}));
    let result = try_root(
        &mut node,
        Update,
        "auth/approle/role/other",
        json!({"role_id": "shared-id"}),
    );
    assert_eq!(failure(result).0, 400);
}

#[test]
fn role_read_has_the_fields_clients_need() {
    let mut node = with_role(json!({"policies": "a", "secret_id_ttl": "10m", "period": 60}));
    let data = data_of(root(&mut node, Read, "auth/approle/role/web", json!({})));
    for field in [
        "bind_secret_id",
        "secret_id_bound_cidrs",
        "secret_id_num_uses",
        "secret_id_ttl",
        "token_ttl",
        "token_max_ttl",
        "token_policies",
        "token_bound_cidrs",
        "token_explicit_max_ttl",
        "token_no_default_policy",
        "token_num_uses",
        "token_period",
        "token_type",
        "local_secret_ids",
        "policies",
        "period",
    ] {
        assert!(data.contains_key(field), "{field} missing from {data:?}");
    }
    assert_eq!(data["token_policies"], json!(["a"]));
    assert_eq!(data["secret_id_ttl"], json!(600));
    assert_eq!(data["token_period"], json!(60));
    assert_eq!(data["token_type"], json!("default"));
    let list = data_of(root(&mut node, List, "auth/approle/role", json!({})));
    assert_eq!(list["keys"], json!(["web"]));
}

#[test]
fn secret_id_lookup_and_destroy() {
    let mut node = with_role(json!({}));
    let secret = new_secret_id(&mut node, "web", json!({"metadata": "{\"env\":\"prod\"}"}));
    let secret_id = text(&secret, "secret_id");
    let accessor = text(&secret, "secret_id_accessor");
    let path = "auth/approle/role/web/secret-id/lookup";
    let lookup = data_of(root(
        &mut node,
        Update,
        path,
        json!({"secret_id": secret_id}),
    ));
    assert_eq!(lookup["secret_id_accessor"], json!(accessor));
    assert_eq!(lookup["metadata"], json!({"env": "prod"}));
    assert_eq!(lookup["expiration_time"], json!("0001-01-01T00:00:00Z"));
    assert_eq!(lookup["secret_id_num_uses"], json!(0));
    let list = data_of(root(
        &mut node,
        List,
        "auth/approle/role/web/secret-id",
        json!({}),
    ));
    assert_eq!(list["keys"], json!([accessor]));

    let path = "auth/approle/role/web/secret-id/destroy";
    root(&mut node, Update, path, json!({"secret_id": secret_id}));
    let path = "auth/approle/role/web/secret-id/lookup";
    let gone = root(&mut node, Update, path, json!({"secret_id": secret_id}));
    assert_eq!(gone, Response::NoContent);
    let list = try_root(
        &mut node,
        List,
        "auth/approle/role/web/secret-id",
        json!({}),
    );
    assert_eq!(failure(list).0, 404);
}

#[test]
fn secret_id_accessor_lookup_and_destroy() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({}));
    let accessor = text(&secret, "secret_id_accessor");
    let body = json!({"secret_id_accessor": accessor});
    let path = "auth/approle/role/web/secret-id-accessor/lookup";
    let lookup = data_of(root(&mut node, Update, path, body.clone()));
    assert_eq!(lookup["secret_id_accessor"], json!(accessor));
    let path = "auth/approle/role/web/secret-id-accessor/destroy";
    root(&mut node, Update, path, body.clone());
    let secret_id = text(&secret, "secret_id");
    assert!(login(&mut node, &role_id, &secret_id, None).is_err());
    let path = "auth/approle/role/web/secret-id-accessor/lookup";
    let result = try_root(&mut node, Update, path, body);
    assert_eq!(failure(result).0, 404);
}

#[test]
fn expired_secret_id_is_invalid() {
    let mut node = with_role(json!({"secret_id_ttl": "1m"}));
    let role_id = role_id(&mut node, "web");
    let secret = new_secret_id(&mut node, "web", json!({}));
    assert_eq!(secret["secret_id_ttl"], json!(60));
    node.advance(Duration::from_secs(61));
    let result = login(&mut node, &role_id, &text(&secret, "secret_id"), None);
    assert_eq!(result.unwrap_err().1, ["invalid role or secret ID"]);
}

#[test]
fn secret_id_limits_cannot_exceed_the_role() {
    let mut node = with_role(json!({"secret_id_num_uses": 2, "secret_id_ttl": "1h"}));
    let path = "auth/approle/role/web/secret-id";
    for body in [
        json!({"num_uses": 3}),
        json!({"num_uses": 0}),
        json!({"ttl": "2h"}),
    ] {
        let result = try_root(&mut node, Update, path, body.clone());
        assert_eq!(failure(result).0, 400, "{body}");
    }
    let secret = new_secret_id(&mut node, "web", json!({}));
    assert_eq!(secret["secret_id_num_uses"], json!(2));
    assert_eq!(secret["secret_id_ttl"], json!(3600));
}

#[test]
fn recreated_role_does_not_revive_old_secret_ids() {
    let mut node = with_role(json!({"role_id": "fixed"}));
    let secret_id = text(&new_secret_id(&mut node, "web", json!({})), "secret_id");
    root(&mut node, Delete, "auth/approle/role/web", json!({}));
    assert!(login(&mut node, "fixed", &secret_id, None).is_err());
    root(
        &mut node,
        Update,
        "auth/approle/role/web",
        json!({"role_id": "fixed"}),
    );
    assert!(login(&mut node, "fixed", &secret_id, None).is_err());
    let shared = node.storage.dump(Partition::Shared);
    assert!(!shared.iter().any(|(key, _)| key.contains("/secret_id/")));
}

#[test]
fn custom_secret_id_logs_in() {
    let mut node = with_role(json!({}));
    let role_id = role_id(&mut node, "web");
    let path = "auth/approle/role/web/custom-secret-id";
    let data = data_of(root(
        &mut node,
        Update,
        path,
        json!({"secret_id": "my-secret"}),
    ));
    assert_eq!(data["secret_id"], json!("my-secret"));
    assert!(login(&mut node, &role_id, "my-secret", None).is_ok());
    let again = try_root(&mut node, Update, path, json!({"secret_id": "my-secret"}));
    assert_eq!(failure(again).0, 400);
}

#[test]
fn field_endpoints_read_set_and_reset() {
    let mut node = with_role(json!({}));
    let path = "auth/approle/role/web/secret-id-num-uses";
    root(&mut node, Update, path, json!({"secret_id_num_uses": 5}));
    let data = data_of(root(&mut node, Read, path, json!({})));
    assert_eq!(data["secret_id_num_uses"], json!(5));
    root(&mut node, Delete, path, json!({}));
    let data = data_of(root(&mut node, Read, path, json!({})));
    assert_eq!(data["secret_id_num_uses"], json!(0));

    let path = "auth/approle/role/web/policies";
    root(&mut node, Update, path, json!({"token_policies": "x,y"}));
    let data = data_of(root(&mut node, Read, path, json!({})));
    assert_eq!(data["token_policies"], json!(["x", "y"]));
    assert_eq!(data["policies"], json!(["x", "y"]));
}

#[test]
fn login_needs_role_id() {
    let mut node = with_role(json!({}));
    let result = anonymous(&mut node, "auth/approle/login", json!({}), None);
    assert_eq!(failure(result), (400, vec!["missing role_id".to_owned()]));
}

#[test]
fn role_management_needs_a_token() {
    let mut node = with_role(json!({}));
    let result = anonymous(
        &mut node,
        "auth/approle/role/web/secret-id",
        json!({}),
        None,
    );
    assert_eq!(failure(result).0, 403);
}

#[test]
fn role_id_never_appears_in_debug_output() {
    let role = super::role::RoleEntry {
        uuid: "u".into(),
        role_id: "very-secret-role-id".into(),
        bind_secret_id: true,
        secret_id_bound_cidrs: Vec::new(),
        secret_id_num_uses: 0,
        secret_id_ttl: 0,
        local_secret_ids: false,
        token: Default::default(),
    };
    let printed = format!("{role:?}");
    assert!(!printed.contains("very-secret-role-id"), "{printed}");
}
