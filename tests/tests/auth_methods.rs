//! userpass and approle logins through vaultrs against a real server.

use coffer_tests::{Server, runtime, vault_client};
use serde_json::json;
use vaultrs::api::auth::approle::requests::{GenerateNewSecretIDRequest, SetAppRoleRequest};
use vaultrs::api::auth::userpass::requests::CreateUserRequest;
use vaultrs::error::ClientError;

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, Vec<String>) {
    match result {
        Err(ClientError::APIError { code, errors }) => (code, errors),
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(value) => panic!("expected an API error, got {value:?}"),
    }
}

#[test]
fn userpass_login_through_vaultrs() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let client = vault_client(&server, &keys.root_token)?;
    rt.block_on(vaultrs::sys::auth::enable(
        &client, "userpass", "userpass", None,
    ))?;

    let mut options = CreateUserRequest::builder();
    options
        .token_policies(vec!["web".to_owned()])
        .token_ttl("10m");
    rt.block_on(vaultrs::auth::userpass::user::set(
        &client,
        "userpass",
        "alice",
        "s3cret",
        Some(&mut options),
    ))?;
    let user = rt.block_on(vaultrs::auth::userpass::user::read(
        &client, "userpass", "alice",
    ))?;
    assert_eq!(user.token_policies, ["web"]);
    assert_eq!(user.token_ttl, 600);
    assert_eq!(user.token_type, "default");

    let anonymous = vault_client(&server, "")?;
    let auth = rt.block_on(vaultrs::auth::userpass::login(
        &anonymous, "userpass", "alice", "s3cret",
    ))?;
    assert_eq!(auth.policies, ["default", "web"]);
    assert_eq!(auth.lease_duration, 600);
    let lookup = server
        .api(&auth.client_token)?
        .get("auth/token/lookup-self")?;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    assert_eq!(lookup.body["data"]["display_name"], json!("userpass-alice"));

    let wrong_password = rt.block_on(vaultrs::auth::userpass::login(
        &anonymous, "userpass", "alice", "guess",
    ));
    let unknown_user = rt.block_on(vaultrs::auth::userpass::login(
        &anonymous, "userpass", "mallory", "s3cret",
    ));
    let wrong_password = api_error(wrong_password);
    assert_eq!(wrong_password.0, 400);
    assert_eq!(wrong_password.1, ["invalid username or password"]);
    assert_eq!(api_error(unknown_user), wrong_password);

    let log = server.log();
    assert!(
        !log.contains("s3cret"),
        "the password reached the server log"
    );
    Ok(())
}

#[test]
fn approle_login_through_vaultrs() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let client = vault_client(&server, &keys.root_token)?;
    rt.block_on(vaultrs::sys::auth::enable(
        &client, "approle", "approle", None,
    ))?;

    let mut options = SetAppRoleRequest::builder();
    options
        .token_policies(vec!["app".to_owned()])
        .token_ttl("1h")
        .secret_id_num_uses(1u64);
    rt.block_on(vaultrs::auth::approle::role::set(
        &client,
        "approle",
        "worker",
        Some(&mut options),
    ))?;
    let role = rt.block_on(vaultrs::auth::approle::role::read(
        &client, "approle", "worker",
    ))?;
    assert!(role.bind_secret_id);
    assert_eq!(role.token_policies, ["app"]);
    let role_id = rt
        .block_on(vaultrs::auth::approle::role::read_id(
            &client, "approle", "worker",
        ))?
        .role_id;

    let mut secret_options = GenerateNewSecretIDRequest::builder();
    secret_options.cidr_list(vec!["127.0.0.1/32".to_owned()]);
    let secret = rt.block_on(vaultrs::auth::approle::role::secret::generate(
        &client,
        "approle",
        "worker",
        Some(&mut secret_options),
    ))?;
    let lookup = rt.block_on(vaultrs::auth::approle::role::secret::read(
        &client,
        "approle",
        "worker",
        &secret.secret_id,
    ))?;
    assert_eq!(lookup.cidr_list, ["127.0.0.1/32"]);
    assert_eq!(lookup.secret_id_accessor, secret.secret_id_accessor);
    assert_eq!(lookup.secret_id_num_uses, 1);

    let anonymous = vault_client(&server, "")?;
    let auth = rt.block_on(vaultrs::auth::approle::login(
        &anonymous,
        "approle",
        &role_id,
        &secret.secret_id,
    ))?;
    assert_eq!(auth.policies, ["app", "default"]);
    assert_eq!(auth.lease_duration, 3600);
    let role_name = auth
        .metadata
        .as_ref()
        .and_then(|meta| meta.get("role_name"));
    assert_eq!(role_name.map(String::as_str), Some("worker"));

    let second = rt.block_on(vaultrs::auth::approle::login(
        &anonymous,
        "approle",
        &role_id,
        &secret.secret_id,
    ));
    assert_eq!(
        api_error(second),
        (400, vec!["invalid role or secret ID".to_owned()])
    );
    Ok(())
}
