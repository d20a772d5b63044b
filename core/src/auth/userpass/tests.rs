use serde_json::{Value, json};

use crate::auth::testing::{anonymous, failure, node_with, root, try_root, with_token};
use crate::request::Auth;
use crate::request::Operation::{Delete, List, Read, Update};
use crate::storage::Partition;
use crate::token::testing::{Node, auth_of, data_of};

fn with_alice() -> Node {
    let mut node = node_with("userpass", "userpass", false);
    let body = json!({"password": "s3cret", "token_policies": "Web,ops", "token_ttl": "10m"});
    root(&mut node, Update, "auth/userpass/users/alice", body);
    node
}

fn login(node: &mut Node, user: &str, password: &str) -> Result<Auth, (u16, Vec<String>)> {
    let path = format!("auth/userpass/login/{user}");
    match anonymous(node, &path, json!({"password": password}), None) {
        Ok(response) => Ok(auth_of(response)),
        Err(error) => Err(failure(Err(error))),
    }
}

#[test]
fn login_works_with_right_password() {
    let mut node = with_alice();
    let auth = login(&mut node, "alice", "s3cret").unwrap();
    assert_eq!(auth.policies, ["default", "ops", "web"]);
    assert_eq!(auth.token_policies, ["default", "ops", "web"]);
    assert_eq!(auth.lease_duration, 600);
    assert!(auth.renewable);
    assert!(auth.orphan);
    let metadata = auth.metadata.unwrap();
    assert_eq!(metadata["username"], json!("alice"));

    let token = auth.client_token.expose().to_owned();
    let lookup = with_token(&mut node, &token, Read, "auth/token/lookup-self", json!({}));
    let data = data_of(lookup.unwrap());
    assert_eq!(data["display_name"], json!("userpass-alice"));
    assert_eq!(data["path"], json!("auth/userpass/login/alice"));
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let mut node = with_alice();
    let wrong_password = login(&mut node, "alice", "guess").unwrap_err();
    let unknown_user = login(&mut node, "mallory", "s3cret").unwrap_err();
    assert_eq!(wrong_password.0, 400);
    assert_eq!(wrong_password.1, ["invalid username or password"]);
    assert_eq!(unknown_user, wrong_password);
}

#[test]
fn login_without_password_is_rejected() {
    let mut node = with_alice();
    let (status, messages) = failure(anonymous(
        &mut node,
        "auth/userpass/login/alice",
        json!({}),
        None,
    ));
    assert_eq!(status, 400);
    assert_eq!(messages, ["missing password"]);
}

#[test]
fn changed_password_replaces_old_one() {
    let mut node = with_alice();
    let body = json!({"password": "n3w"});
    root(
        &mut node,
        Update,
        "auth/userpass/users/alice/password",
        body,
    );
    assert_eq!(login(&mut node, "alice", "s3cret").unwrap_err().0, 400);
    assert!(login(&mut node, "alice", "n3w").is_ok());
}

#[test]
fn update_without_password_keeps_it() {
    let mut node = with_alice();
    root(
        &mut node,
        Update,
        "auth/userpass/users/alice",
        json!({"token_ttl": 60}),
    );
    let auth = login(&mut node, "alice", "s3cret").unwrap();
    assert_eq!(auth.lease_duration, 60);
}

#[test]
fn policies_endpoint_reaches_the_token() {
    let mut node = with_alice();
    let body = json!({"token_policies": ["audit"]});
    root(
        &mut node,
        Update,
        "auth/userpass/users/alice/policies",
        body,
    );
    let auth = login(&mut node, "alice", "s3cret").unwrap();
    assert_eq!(auth.policies, ["audit", "default"]);
}

#[test]
fn legacy_fields_are_accepted_and_read_back() {
    let mut node = node_with("userpass", "userpass", false);
    let body = json!({"password": "pw", "policies": "not_root", "ttl": "10s", "max_ttl": "1h"});
    root(&mut node, Update, "auth/userpass/users/bob", body);
    let data = data_of(root(&mut node, Read, "auth/userpass/users/bob", json!({})));
    assert_eq!(data["token_policies"], json!(["not_root"]));
    assert_eq!(data["policies"], json!(["not_root"]));
    assert_eq!(data["token_ttl"], json!(10));
    assert_eq!(data["ttl"], json!(10));
    assert_eq!(data["token_max_ttl"], json!(3600));
    assert_eq!(data["token_type"], json!("default"));
    assert_eq!(data["token_bound_cidrs"], json!([]));
    let auth = login(&mut node, "bob", "pw").unwrap();
    assert_eq!(auth.lease_duration, 10);
}

#[test]
fn read_never_returns_the_password() {
    let mut node = with_alice();
    let data = data_of(root(
        &mut node,
        Read,
        "auth/userpass/users/alice",
        json!({}),
    ));
    let text = Value::Object(data).to_string();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!text.contains("argon2"), "{text}");
}

#[test]
fn stored_user_is_shared_ciphertext_and_token_is_local() {
    let mut node = with_alice();
    let auth = login(&mut node, "alice", "s3cret").unwrap();
    let shared = node.storage.dump(Partition::Shared);
    let user: Vec<&(String, Vec<u8>)> = shared
        .iter()
        .filter(|(key, _)| key.ends_with("/user/alice"))
        .collect();
    assert_eq!(user.len(), 1);
    let stored = String::from_utf8_lossy(&user[0].1);
    assert!(
        !stored.contains("argon2id"),
        "the user entry is stored in clear"
    );
    assert!(!stored.contains("s3cret"));
    let local = node.storage.dump(Partition::Local);
    let accessor_key = format!("token/accessor/{}", auth.accessor);
    assert!(local.iter().any(|(key, _)| *key == accessor_key));
    assert!(!shared.iter().any(|(key, _)| key.starts_with("token/")));
}

#[test]
fn user_names_are_lowercased() {
    let mut node = node_with("userpass", "userpass", false);
    root(
        &mut node,
        Update,
        "auth/userpass/users/Carol",
        json!({"password": "pw"}),
    );
    assert!(login(&mut node, "CAROL", "pw").is_ok());
    let list = data_of(root(&mut node, List, "auth/userpass/users", json!({})));
    assert_eq!(list["keys"], json!(["carol"]));
}

#[test]
fn creating_user_needs_a_password() {
    let mut node = node_with("userpass", "userpass", false);
    let result = try_root(&mut node, Update, "auth/userpass/users/dave", json!({}));
    let (status, messages) = failure(result);
    assert_eq!(status, 400);
    assert!(messages[0].starts_with("missing password"), "{messages:?}");
}

#[test]
fn invalid_user_name_is_rejected() {
    let mut node = node_with("userpass", "userpass", false);
    let body = json!({"password": "pw"});
    let result = try_root(&mut node, Update, "auth/userpass/users/-bad", body);
    assert_eq!(failure(result).0, 400);
}

#[test]
fn deleted_user_cannot_log_in() {
    let mut node = with_alice();
    root(&mut node, Delete, "auth/userpass/users/alice", json!({}));
    assert_eq!(login(&mut node, "alice", "s3cret").unwrap_err().0, 400);
    let read = try_root(&mut node, Read, "auth/userpass/users/alice", json!({}));
    assert_eq!(failure(read).0, 404);
    let list = try_root(&mut node, List, "auth/userpass/users", json!({}));
    assert_eq!(failure(list).0, 404);
}

#[test]
fn managing_users_needs_a_token() {
    let mut node = with_alice();
    let body = json!({"password": "x"});
    let result = anonymous(&mut node, "auth/userpass/users/alice", body, None);
    assert_eq!(failure(result), (403, vec!["permission denied".to_owned()]));
}

#[test]
fn user_named_login_is_managed_with_a_token() {
    let mut node = node_with("userpass", "userpass", false);
    root(
        &mut node,
        Update,
        "auth/userpass/users/login",
        json!({"password": "pw"}),
    );
    let data = data_of(root(
        &mut node,
        Read,
        "auth/userpass/users/login",
        json!({}),
    ));
    assert_eq!(data["token_policies"], json!([]));
    assert!(login(&mut node, "login", "pw").is_ok());
}

#[test]
fn root_policy_is_refused_at_login() {
    let mut node = node_with("userpass", "userpass", false);
    let body = json!({"password": "pw", "token_policies": "root"});
    root(&mut node, Update, "auth/userpass/users/eve", body);
    let (status, messages) = login(&mut node, "eve", "pw").unwrap_err();
    assert_eq!(status, 400);
    assert_eq!(messages, ["auth methods cannot create root tokens"]);
}

#[test]
fn login_at_unmounted_path_is_permission_denied() {
    let mut node = with_alice();
    let result = anonymous(&mut node, "auth/gcp/login", json!({"role": "x"}), None);
    assert_eq!(failure(result).0, 403);
}

#[test]
fn mount_on_nested_path_names_tokens_after_it() {
    let mut node = node_with("userpass", "corp/people", false);
    root(
        &mut node,
        Update,
        "auth/corp/people/users/ann",
        json!({"password": "pw"}),
    );
    let response = anonymous(
        &mut node,
        "auth/corp/people/login/ann",
        json!({"password": "pw"}),
        None,
    );
    let token = auth_of(response.unwrap()).client_token.expose().to_owned();
    let lookup = with_token(&mut node, &token, Read, "auth/token/lookup-self", json!({}));
    let data = data_of(lookup.unwrap());
    assert_eq!(data["display_name"], json!("corp-people-ann"));
    assert_eq!(data["path"], json!("auth/corp/people/login/ann"));
}
