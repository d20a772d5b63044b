//! ACL policies: a token with a policy reaches the paths it allows and nothing else.

use coffer_tests::{Server, runtime, vault_client};
use serde_json::json;
use vaultrs::api::token::requests::CreateTokenRequest;

const READER_POLICY: &str = r#"
path "secret/data/allowed/*" {
  capabilities = ["read"]
}
"#;

#[test]
fn policy_allows_one_path_and_denies_another() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let root_api = server.api(&keys.root_token)?;
    root_api.enable_kv("secret", "2")?;
    for path in ["secret/data/allowed/x", "secret/data/denied/x"] {
        root_api
            .put(path, &json!({"data": {"k": "v"}, "options": {}}))?
            .expect_status(200)?;
    }

    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;
    rt.block_on(vaultrs::sys::policy::set(&root, "reader", READER_POLICY))?;
    let stored = rt.block_on(vaultrs::sys::policy::read(&root, "reader"))?;
    assert_eq!(stored.rules, READER_POLICY);

    let mut request = CreateTokenRequest::builder();
    request.policies(vec!["reader".to_owned()]);
    let token = rt.block_on(vaultrs::token::new(&root, Some(&mut request)))?;
    assert!(
        token.policies.contains(&"reader".to_owned()),
        "{:?}",
        token.policies
    );

    let reader = root_api.with_token(&token.client_token);
    let allowed = reader.get("secret/data/allowed/x")?;
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(allowed.body["data"]["data"]["k"], json!("v"));

    let denied = reader.get("secret/data/denied/x")?;
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert!(
        denied
            .errors()
            .iter()
            .any(|error| error.contains("permission denied"))
    );

    let write = reader.put("secret/data/allowed/x", &json!({"data": {"k": "w"}}))?;
    assert_eq!(
        write.status, 403,
        "read capability does not allow a write: {}",
        write.text
    );

    let mounts = reader.get("sys/mounts")?;
    assert_eq!(mounts.status, 403, "{}", mounts.text);
    Ok(())
}

#[test]
fn policy_list_has_builtins_and_delete_removes() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;

    rt.block_on(vaultrs::sys::policy::set(&root, "temp", READER_POLICY))?;
    let listed = rt.block_on(vaultrs::sys::policy::list(&root))?;
    for name in ["default", "root", "temp"] {
        assert!(
            listed.policies.contains(&name.to_owned()),
            "{:?}",
            listed.policies
        );
    }

    rt.block_on(vaultrs::sys::policy::delete(&root, "temp"))?;
    let read = server.api(&keys.root_token)?.get("sys/policy/temp")?;
    assert_eq!(read.status, 404, "{}", read.text);
    Ok(())
}

#[test]
fn request_without_token_is_denied() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    server.api(&keys.root_token)?.enable_kv("kv", "1")?;
    let anonymous = server.api("")?.get("kv/anything")?;
    assert_eq!(anonymous.status, 403, "{}", anonymous.text);
    let forged = server.api("hvs.not-a-real-token")?.get("kv/anything")?;
    assert_eq!(forged.status, 403, "{}", forged.text);
    Ok(())
}
