use std::time::Duration;

use serde_json::json;

use super::testing::{Node, auth_of, data_of, logical};
use crate::request::{Operation, Request, Response};
use crate::storage::Partition;

fn lookup_self(
    node: &mut Node,
    token: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, u16> {
    let request = Request::new(Operation::Read, "auth/token/lookup-self").with_token(token);
    match node.run(&request) {
        crate::Outcome::Response(response) => Ok(data_of(response)),
        crate::Outcome::Error(error) => Err(error.status()),
        other => panic!("lookup-self did not finish: {other:?}"),
    }
}

#[test]
fn root_token_has_vault_shape() {
    let mut node = Node::new();
    assert!(node.root.starts_with("hvs."));
    assert_eq!(node.root.len(), 28);
    let root = node.root.clone();
    let data = lookup_self(&mut node, &root).unwrap();
    assert_eq!(data["policies"], json!(["root"]));
    assert_eq!(data["path"], "auth/token/root");
    assert_eq!(data["display_name"], "root");
    assert_eq!(data["orphan"], true);
    assert_eq!(data["meta"], json!(null));
    assert_eq!(data["expire_time"], json!(null));
    assert_eq!(data["ttl"], 0);
    assert_eq!(data["id"], json!(root));
    assert!(!data.contains_key("renewable"));
}

#[test]
fn create_returns_auth_envelope() {
    let mut node = Node::new();
    let root = node.root.clone();
    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"policies": ["web"], "meta": {"team": "a"}, "ttl": "1h"}))
        .with_token(root);
    let logical = logical(node.ok(request));
    assert_eq!(logical.data, None);
    assert_eq!(
        logical.warnings,
        vec!["Policy \"web\" does not exist".to_owned()]
    );
    let auth = logical.auth.unwrap();
    assert_eq!(auth.policies, ["default", "web"]);
    assert_eq!(auth.token_policies, auth.policies);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable);
    assert!(!auth.orphan);
    assert_eq!(auth.token_type, "service");
    assert_eq!(auth.accessor.len(), 24);
    assert_eq!(auth.metadata.unwrap()["team"], "a");
}

#[test]
fn lookup_reports_created_fields() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(
        &root,
        json!({"display_name": "web  app!", "num_uses": 5, "policies": ["a"]}),
    );
    node.advance(Duration::from_secs(10));
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup",
        json!({"token": auth.client_token.expose()}),
    );
    let data = data_of(node.ok(request));
    assert_eq!(data["display_name"], "token-web-app");
    assert_eq!(data["num_uses"], 5);
    assert_eq!(data["creation_ttl"], 2_764_800);
    assert_eq!(data["ttl"], 2_764_790);
    assert_eq!(data["path"], "auth/token/create");
    assert_eq!(data["renewable"], true);
    assert_eq!(data["id"], json!(auth.client_token.expose()));
    assert!(data["expire_time"].is_string());
}

#[test]
fn root_without_policies_gives_root_token() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({}));
    assert_eq!(auth.policies, ["root"]);
    assert_eq!(auth.lease_duration, 0);
}

#[test]
fn lookup_of_unknown_token_is_bad_token() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup",
        json!({"token": "hvs.nothing"}),
    );
    let error = node.fail(request);
    assert_eq!(error.status(), 403);
    assert_eq!(error.to_string(), "403: bad token");
}

#[test]
fn unknown_token_is_denied() {
    let mut node = Node::new();
    assert_eq!(lookup_self(&mut node, "hvs.unknown"), Err(403));
    let request = Request::new(Operation::Read, "auth/token/lookup-self");
    assert_eq!(node.fail(request).status(), 403);
}

#[test]
fn explicit_max_ttl_caps_ttl() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(
        &root,
        json!({"policies": ["a"], "ttl": "30m", "explicit_max_ttl": "5m"}),
    );
    assert_eq!(auth.lease_duration, 300);
}

#[test]
fn periodic_token_gets_period() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "period": "30m"}));
    assert_eq!(auth.lease_duration, 1800);
    let data = lookup_self(&mut node, auth.client_token.expose()).unwrap();
    assert_eq!(data["period"], 1800);
}

#[test]
fn renew_extends_lease_and_keeps_token() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "ttl": "1h"}));
    node.advance(Duration::from_secs(1800));
    let token = auth.client_token.expose().to_owned();
    let request = Request::new(Operation::Update, "auth/token/renew-self")
        .with_data(json!({"increment": "2h"}))
        .with_token(token.clone());
    let renewed = auth_of(node.ok(request));
    assert_eq!(renewed.client_token.expose(), token);
    assert_eq!(renewed.lease_duration, 7200);
    let data = lookup_self(&mut node, &token).unwrap();
    assert_eq!(data["ttl"], 7200);
}

#[test]
fn renew_of_non_renewable_token_fails() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "renewable": false}));
    let request = node.root_request(
        Operation::Update,
        "auth/token/renew",
        json!({"token": auth.client_token.expose()}),
    );
    assert_eq!(node.fail(request).status(), 400);
    let request = node.root_request(Operation::Update, "auth/token/renew-self", json!({}));
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn token_expires_at_its_ttl() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "ttl": "60s"}));
    let token = auth.client_token.expose().to_owned();
    node.advance(Duration::from_secs(59));
    assert!(lookup_self(&mut node, &token).is_ok());
    node.advance(Duration::from_secs(1));
    assert_eq!(lookup_self(&mut node, &token), Err(403));
    // The lazy revocation removed the accessor too.
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup-accessor",
        json!({"accessor": auth.accessor}),
    );
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn num_uses_counts_down_then_token_dies() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"num_uses": 3}));
    let token = auth.client_token.expose().to_owned();
    assert_eq!(lookup_self(&mut node, &token).unwrap()["num_uses"], 2);
    assert_eq!(lookup_self(&mut node, &token).unwrap()["num_uses"], 1);
    // The last use still runs, but others no longer see the token.
    assert_eq!(lookup_self(&mut node, &token).unwrap()["num_uses"], 0);
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup",
        json!({"token": token}),
    );
    assert_eq!(node.fail(request).status(), 403);
    assert_eq!(lookup_self(&mut node, &token), Err(403));
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup-accessor",
        json!({"accessor": auth.accessor}),
    );
    assert_eq!(node.fail(request).to_string(), "400: invalid accessor");
}

#[test]
fn tidy_revokes_used_up_and_expired_tokens() {
    let mut node = Node::new();
    let root = node.root.clone();
    let used = node.create_token(&root, json!({"num_uses": 1}));
    let short = node.create_token(&root, json!({"policies": ["a"], "ttl": "10s"}));
    let kept = node.create_token(&root, json!({"policies": ["a"]}));
    assert!(lookup_self(&mut node, used.client_token.expose()).is_ok());
    node.advance(Duration::from_secs(10));
    let request = node.root_request(Operation::Update, "auth/token/tidy", json!({}));
    node.ok(request);
    let request = node.root_request(Operation::List, "auth/token/accessors/", json!({}));
    let keys = data_of(node.ok(request))["keys"].clone();
    let keys = keys.as_array().unwrap();
    assert!(!keys.contains(&json!(used.accessor)));
    assert!(!keys.contains(&json!(short.accessor)));
    assert!(keys.contains(&json!(kept.accessor)));
}

#[test]
fn revoke_removes_children_but_revoke_orphan_keeps_them() {
    let mut node = Node::new();
    let root = node.root.clone();
    let parent = node.create_token(&root, json!({"policies": ["root"]}));
    let parent_token = parent.client_token.expose().to_owned();
    let child = node.create_token(&parent_token, json!({}));
    let grandchild = node.create_token(child.client_token.expose(), json!({}));
    let request = node.root_request(
        Operation::Update,
        "auth/token/revoke",
        json!({"token": parent_token}),
    );
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(lookup_self(&mut node, &parent_token), Err(403));
    assert_eq!(
        lookup_self(&mut node, child.client_token.expose()),
        Err(403)
    );
    assert_eq!(
        lookup_self(&mut node, grandchild.client_token.expose()),
        Err(403)
    );

    let parent = node.create_token(&root, json!({"policies": ["root"]}));
    let parent_token = parent.client_token.expose().to_owned();
    let child = node.create_token(&parent_token, json!({}));
    let request = node.root_request(
        Operation::Update,
        "auth/token/revoke-orphan",
        json!({"token": parent_token}),
    );
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(lookup_self(&mut node, &parent_token), Err(403));
    let data = lookup_self(&mut node, child.client_token.expose()).unwrap();
    assert_eq!(data["orphan"], true);
}

#[test]
fn revoke_self_and_create_orphan() {
    let mut node = Node::new();
    let root = node.root.clone();
    let request = node.root_request(Operation::Update, "auth/token/create-orphan", json!({}));
    let orphan = auth_of(node.ok(request));
    assert!(orphan.orphan);
    let token = orphan.client_token.expose().to_owned();
    let request =
        Request::new(Operation::Update, "auth/token/revoke-self").with_token(token.clone());
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(lookup_self(&mut node, &token), Err(403));
    assert!(lookup_self(&mut node, &root).is_ok());
}

#[test]
fn child_policies_must_be_subset_of_parent() {
    let mut node = Node::new();
    let root = node.root.clone();
    node.put_policy(
        "maker",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let parent = node.create_token(&root, json!({"policies": ["maker", "web"]}));
    let parent_token = parent.client_token.expose().to_owned();
    let child = node.create_token(&parent_token, json!({"policies": ["web"]}));
    assert_eq!(child.policies, ["default", "web"]);
    let inherited = node.create_token(&parent_token, json!({"no_default_policy": true}));
    assert_eq!(inherited.policies, ["maker", "web"]);
    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"policies": ["admin"]}))
        .with_token(parent_token.clone());
    let error = node.fail(request);
    assert_eq!(
        error.to_string(),
        "400: child policies must be subset of parent"
    );
    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"no_parent": true}))
        .with_token(parent_token);
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn custom_id_needs_root() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"id": "my-token", "policies": ["a"]}));
    assert_eq!(auth.client_token.expose(), "my-token");
    assert!(lookup_self(&mut node, "my-token").is_ok());
    let request = node.root_request(
        Operation::Update,
        "auth/token/create",
        json!({"id": "my-token"}),
    );
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn batch_tokens_are_rejected() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/create",
        json!({"type": "batch"}),
    );
    let error = node.fail(request);
    assert_eq!(error.to_string(), "400: batch tokens are not supported");
}

#[test]
fn accessor_operations() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"], "ttl": "1h"}));
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup-accessor",
        json!({"accessor": auth.accessor}),
    );
    let data = data_of(node.ok(request));
    assert_eq!(data["id"], "");
    assert_eq!(data["policies"], json!(["a", "default"]));

    let request = node.root_request(Operation::List, "auth/token/accessors/", json!({}));
    let keys = data_of(node.ok(request))["keys"].clone();
    assert!(keys.as_array().unwrap().contains(&json!(auth.accessor)));

    let request = node.root_request(
        Operation::Update,
        "auth/token/renew-accessor",
        json!({"accessor": auth.accessor, "increment": 60}),
    );
    assert_eq!(auth_of(node.ok(request)).lease_duration, 60);

    let request = node.root_request(
        Operation::Update,
        "auth/token/revoke-accessor",
        json!({"accessor": auth.accessor}),
    );
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(lookup_self(&mut node, auth.client_token.expose()), Err(403));

    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup-accessor",
        json!({"accessor": "nope"}),
    );
    assert_eq!(node.fail(request).to_string(), "400: invalid accessor");
}

#[test]
fn accessor_list_needs_sudo() {
    let mut node = Node::new();
    let root = node.root.clone();
    node.put_policy(
        "lister",
        r#"path "auth/token/accessors/" { capabilities = ["list"] }"#,
    );
    let auth = node.create_token(&root, json!({"policies": ["lister"]}));
    let request = Request::new(Operation::List, "auth/token/accessors/")
        .with_token(auth.client_token.expose());
    assert_eq!(node.fail(request).status(), 403);
}

#[test]
fn token_never_stored_in_clear() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"]}));
    let tokens = [root, auth.client_token.expose().to_owned()];
    for partition in crate::storage::Partition::ALL {
        for (key, value) in node.storage.dump(partition) {
            for token in &tokens {
                let random = &token[4..];
                assert!(!key.contains(random), "token in key {key}");
                let found = value
                    .windows(random.len())
                    .any(|window| window == random.as_bytes());
                assert!(!found, "token in the value at {key}");
            }
        }
    }
    assert!(!node.storage.dump(Partition::Local).is_empty());
}

#[test]
fn debug_output_hides_tokens() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"]}));
    let token = auth.client_token.expose().to_owned();
    assert!(!format!("{auth:?}").contains(&token));
    let caller = {
        let request =
            Request::new(Operation::Read, "auth/token/lookup-self").with_token(token.clone());
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        crate::storage::Storage::read(&node.storage, |txn| {
            let mut read_only = crate::storage::ReadOnly(txn);
            let mut ctx = crate::Ctx::new(now, &mut *rng);
            super::authenticate(core, &mut ctx, &request, &mut read_only)
        })
        .unwrap()
        .unwrap()
    };
    assert_eq!(caller.policies, ["a", "default"]);
    assert!(!format!("{caller:?}").contains(&token));
}

#[test]
fn role_lifecycle_and_listing() {
    let mut node = Node::new();
    let request = node.root_request(Operation::List, "auth/token/roles/", json!({}));
    assert_eq!(node.fail(request).status(), 404);
    let request = node.root_request(Operation::Update, "auth/token/roles/testrole", json!({}));
    assert_eq!(node.ok(request), Response::NoContent);
    let request = node.root_request(Operation::List, "auth/token/roles/", json!({}));
    assert_eq!(data_of(node.ok(request))["keys"], json!(["testrole"]));
    let request = node.root_request(Operation::Read, "auth/token/roles/testrole", json!({}));
    let data = data_of(node.ok(request));
    assert_eq!(data["orphan"], false);
    assert_eq!(data["renewable"], true);
    let request = node.root_request(Operation::Delete, "auth/token/roles/testrole", json!({}));
    assert_eq!(node.ok(request), Response::NoContent);
    let request = node.root_request(Operation::Read, "auth/token/roles/testrole", json!({}));
    assert_eq!(node.fail(request).status(), 404);
}

#[test]
fn role_sets_policies_orphan_and_period() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/testrole",
        json!({"allowed_policies": "testpolicy", "orphan": true, "period": "10m",
               "path_suffix": "ci"}),
    );
    node.ok(request);
    let request = node.root_request(
        Operation::Update,
        "auth/token/create/testrole",
        json!({"lease": "1h"}),
    );
    let auth = auth_of(node.ok(request));
    assert_eq!(auth.policies, ["default", "testpolicy"]);
    assert!(auth.orphan);
    assert_eq!(auth.lease_duration, 600);
    let data = lookup_self(&mut node, auth.client_token.expose()).unwrap();
    assert_eq!(data["role"], "testrole");
    assert_eq!(data["path"], "auth/token/create/testrole/ci");

    let request = node.root_request(
        Operation::Update,
        "auth/token/create/testrole",
        json!({"policies": ["other"]}),
    );
    assert_eq!(node.fail(request).status(), 400);
    let request = node.root_request(Operation::Update, "auth/token/create/missing", json!({}));
    assert_eq!(node.fail(request).to_string(), "400: unknown role missing");
}

#[test]
fn token_in_path_form_is_accepted() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["a"]}));
    let token = auth.client_token.expose().to_owned();
    let path = format!("auth/token/lookup/{token}");
    let data = data_of(node.ok(node.root_request(Operation::Read, &path, json!({}))));
    assert_eq!(data["accessor"], json!(auth.accessor));
    let path = format!("auth/token/revoke/{token}");
    let request = node.root_request(Operation::Update, &path, json!({}));
    assert_eq!(node.ok(request), Response::NoContent);
    assert_eq!(lookup_self(&mut node, &token), Err(403));
}

#[test]
fn use_limited_token_cannot_create_children() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": ["root"], "num_uses": 5}));
    let request =
        Request::new(Operation::Update, "auth/token/create").with_token(auth.client_token.expose());
    let error = node.fail(request);
    assert_eq!(
        error.to_string(),
        "400: use limited tokens cannot create child tokens"
    );
}

#[test]
fn revoke_without_token_is_rejected() {
    let mut node = Node::new();
    let request = node.root_request(Operation::Update, "auth/token/revoke", json!({}));
    assert_eq!(node.fail(request).status(), 400);
    let root = node.root.clone();
    assert!(lookup_self(&mut node, &root).is_ok());
}

#[test]
fn renew_never_passes_explicit_max_ttl() {
    let mut node = Node::new();
    let root = node.root.clone();
    let auth = node.create_token(
        &root,
        json!({"policies": ["a"], "ttl": "60s", "explicit_max_ttl": "100s"}),
    );
    let token = auth.client_token.expose().to_owned();
    node.advance(Duration::from_secs(50));
    let request = Request::new(Operation::Update, "auth/token/renew-self")
        .with_data(json!({"increment": "1h"}))
        .with_token(token.clone());
    assert_eq!(auth_of(node.ok(request)).lease_duration, 50);
    // Half a second before the explicit maximum, no whole second is left to grant.
    node.advance(Duration::from_millis(49_500));
    let request = Request::new(Operation::Update, "auth/token/renew-self")
        .with_data(json!({"increment": "1h"}))
        .with_token(token.clone());
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    node.advance(Duration::from_millis(500));
    assert_eq!(lookup_self(&mut node, &token), Err(403));
}

#[test]
fn role_name_in_body_selects_role() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/ci",
        json!({"allowed_policies": ["build"]}),
    );
    node.ok(request);
    let request = node.root_request(
        Operation::Update,
        "auth/token/create",
        json!({"role_name": "ci"}),
    );
    assert_eq!(auth_of(node.ok(request)).policies, ["build", "default"]);
}

/// Creates a token as root with a policy granting `capabilities` on `path`, and returns it.
fn token_with_rule(node: &mut Node, name: &str, path: &str, capabilities: &str) -> String {
    node.put_policy(
        name,
        &format!(r#"path "{path}" {{ capabilities = [{capabilities}] }}"#),
    );
    let root = node.root.clone();
    let auth = node.create_token(&root, json!({"policies": [name]}));
    auth.client_token.expose().to_owned()
}

#[test]
fn sudo_token_cannot_create_root_token() {
    let mut node = Node::new();
    let sudoer = token_with_rule(
        &mut node,
        "sudoer",
        "auth/token/create",
        r#""update", "sudo""#,
    );
    for data in [
        json!({"policies": ["root"]}),
        json!({"policies": ["root"], "no_parent": true}),
        json!({"policies": ["web", "root"]}),
    ] {
        let request = Request::new(Operation::Update, "auth/token/create")
            .with_data(data)
            .with_token(sudoer.clone());
        assert_eq!(
            node.fail(request).to_string(),
            "400: root tokens may not be created without parent token being root"
        );
    }
    // Sudo still allows policies the caller lacks.
    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"policies": ["web"]}))
        .with_token(sudoer);
    assert_eq!(auth_of(node.ok(request)).policies, ["default", "web"]);
}

#[test]
fn create_rejects_response_wrapping_policy() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/create",
        json!({"policies": ["Response-Wrapping"]}),
    );
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("response-wrapping"), "{error}");

    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/wrapper",
        json!({"allowed_policies": ["response-wrapping"]}),
    );
    node.ok(request);
    let request = node.root_request(Operation::Update, "auth/token/create/wrapper", json!({}));
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn role_cannot_give_root_to_non_root_parent() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/admin",
        json!({"allowed_policies": ["root"], "orphan": true}),
    );
    node.ok(request);
    let maker = token_with_rule(
        &mut node,
        "maker",
        "auth/token/create/*",
        r#""update", "sudo""#,
    );
    let request =
        Request::new(Operation::Update, "auth/token/create/admin").with_token(maker.clone());
    assert_eq!(
        node.fail(request).to_string(),
        "400: root tokens may not be created without parent token being root"
    );
    let request = node.root_request(Operation::Update, "auth/token/create/admin", json!({}));
    assert_eq!(auth_of(node.ok(request)).policies, ["root"]);
}

#[test]
fn child_dies_with_expired_parent() {
    let mut node = Node::new();
    let root = node.root.clone();
    let parent = node.create_token(&root, json!({"policies": ["root"], "ttl": "60s"}));
    let parent_token = parent.client_token.expose().to_owned();
    let child = node.create_token(&parent_token, json!({"policies": ["root"], "ttl": "1h"}));
    let child_token = child.client_token.expose().to_owned();
    let grandchild = node.create_token(&child_token, json!({"policies": ["a"], "ttl": "1h"}));
    let grandchild_token = grandchild.client_token.expose().to_owned();
    let orphan = node.create_token(&parent_token, json!({"policies": ["a"], "no_parent": true}));
    let orphan_token = orphan.client_token.expose().to_owned();
    node.advance(Duration::from_secs(60));

    // Nobody presented the parent since it expired.
    assert_eq!(lookup_self(&mut node, &child_token), Err(403));
    assert_eq!(lookup_self(&mut node, &grandchild_token), Err(403));
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup",
        json!({"token": grandchild_token}),
    );
    assert_eq!(node.fail(request).to_string(), "403: bad token");
    let request = node.root_request(
        Operation::Update,
        "auth/token/lookup-accessor",
        json!({"accessor": child.accessor}),
    );
    assert_eq!(node.fail(request).status(), 403);
    let request = node.root_request(
        Operation::Update,
        "auth/token/renew",
        json!({"token": child_token}),
    );
    assert_eq!(node.fail(request).status(), 403);
    let request = node.root_request(
        Operation::Update,
        "sys/capabilities",
        json!({"token": child_token, "paths": ["secret/a"]}),
    );
    assert_eq!(node.fail(request).status(), 400);
    assert!(lookup_self(&mut node, &orphan_token).is_ok());
}

/// Stores a chain of `length` tokens named `chain-0`, `chain-1`, ..., each the parent of the
/// next, under the root token, and returns the last token.
fn store_chain(node: &mut Node, length: usize) -> String {
    let (core, rng, now, root) = (&node.core, &mut node.rng, node.now, node.root.clone());
    crate::storage::Storage::write(&node.storage, |txn| {
        let mut view = core.barrier.view(txn, rng)?;
        let mut parent = super::store::new_hash(&mut view, &root)?;
        for i in 0..length {
            let token_hash = super::store::new_hash(&mut view, &format!("chain-{i}"))?;
            let entry = super::store::TokenEntry {
                accessor: format!("chain-accessor-{i}"),
                policies: vec![String::from("root")],
                parent,
                creation_time: now,
                token_type: String::from("service"),
                ..super::store::TokenEntry::default()
            };
            super::store::save(&mut view, &token_hash, &entry)?;
            parent = token_hash;
        }
        Ok::<_, crate::error::Error>(())
    })
    .unwrap();
    format!("chain-{}", length - 1)
}

#[test]
fn chain_deeper_than_bound_is_rejected() {
    let mut node = Node::new();
    let deepest = store_chain(&mut node, super::store::MAX_PARENT_DEPTH);
    // The deepest allowed token works but cannot have a child of its own.
    assert!(lookup_self(&mut node, &deepest).is_ok());
    let request = Request::new(Operation::Update, "auth/token/create").with_token(deepest.clone());
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("too deep"), "{error}");
    let request = Request::new(Operation::Update, "auth/token/create-orphan").with_token(deepest);
    node.ok(request);

    let mut node = Node::new();
    let too_deep = store_chain(&mut node, super::store::MAX_PARENT_DEPTH + 1);
    assert_eq!(lookup_self(&mut node, &too_deep), Err(403));
}

#[test]
fn long_durations_are_capped_with_warnings() {
    let mut node = Node::new();
    let root = node.root.clone();
    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"policies": ["a"], "period": "87600h", "explicit_max_ttl": "10000h"}))
        .with_token(root.clone());
    let created = logical(node.ok(request));
    assert_eq!(created.auth.as_ref().unwrap().lease_duration, 2_764_800);
    assert!(created.warnings.contains(&String::from(
        "period of \"87600h0m0s\" exceeded the effective max_ttl of \"768h0m0s\"; \
         period value is capped accordingly"
    )));
    assert!(created.warnings.contains(&String::from(
        "explicit_max_ttl of \"10000h0m0s\" exceeded the effective max_ttl of \"768h0m0s\"; \
         explicit_max_ttl value is capped accordingly"
    )));
    let token = created.auth.unwrap().client_token.expose().to_owned();
    let data = lookup_self(&mut node, &token).unwrap();
    assert_eq!(data["period"], 2_764_800);
    assert_eq!(data["explicit_max_ttl"], 2_764_800);

    let request = Request::new(Operation::Update, "auth/token/create")
        .with_data(json!({"policies": ["a"], "ttl": "10000h"}))
        .with_token(root);
    let created = logical(node.ok(request));
    assert_eq!(created.auth.unwrap().lease_duration, 2_764_800);
    assert!(created.warnings.contains(&String::from(
        "ttl of \"10000h0m0s\" exceeded the effective max_ttl of \"768h0m0s\"; \
         ttl value is capped accordingly"
    )));
}

#[test]
fn absurd_durations_are_rejected() {
    let mut node = Node::new();
    for field in ["period", "ttl", "explicit_max_ttl"] {
        for value in [json!(u64::MAX), json!(u64::MAX.to_string())] {
            let request = node.root_request(
                Operation::Update,
                "auth/token/create",
                json!({ field: value, "policies": ["a"] }),
            );
            let error = node.fail(request);
            assert_eq!(error.status(), 400);
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("400: invalid {field}:")),
                "{error}"
            );
        }
    }
    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/huge",
        json!({"period": u64::MAX}),
    );
    assert_eq!(node.fail(request).status(), 400);
}

#[test]
fn token_in_path_form_obeys_base_path_rules() {
    let mut node = Node::new();
    let root = node.root.clone();
    node.put_policy(
        "no-revoke",
        r#"
path "auth/token/*" { capabilities = ["read", "update"] }
path "auth/token/revoke" { capabilities = ["deny"] }
path "auth/token/lookup" { capabilities = ["read", "update"] }
"#,
    );
    let caller = node.create_token(&root, json!({"policies": ["no-revoke"]}));
    let caller_token = caller.client_token.expose().to_owned();
    let target = node.create_token(&root, json!({"policies": ["a"]}));
    let target_token = target.client_token.expose().to_owned();

    let path = format!("auth/token/revoke/{target_token}");
    let request = Request::new(Operation::Update, &path).with_token(caller_token.clone());
    assert_eq!(node.fail(request).status(), 403);
    assert!(lookup_self(&mut node, &target_token).is_ok());

    let path = format!("auth/token/lookup/{target_token}");
    let request = Request::new(Operation::Read, &path).with_token(caller_token);
    assert_eq!(
        data_of(node.ok(request))["accessor"],
        json!(target.accessor)
    );
}

#[test]
fn create_rejects_control_characters_in_policies() {
    let mut node = Node::new();
    let request = node.root_request(
        Operation::Update,
        "auth/token/create",
        json!({"policies": ["web\u{0}"]}),
    );
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(error.to_string().contains("control character"), "{error}");
    let request = node.root_request(
        Operation::Update,
        "auth/token/roles/r",
        json!({"allowed_policies": ["a\nb"]}),
    );
    assert_eq!(node.fail(request).status(), 400);
}
