//! Tokens: create, look up, renew and revoke, and revocation of children with their parent.

use coffer_tests::{Server, runtime, vault_client};
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::error::ClientError;

fn is_denied<T: std::fmt::Debug>(result: Result<T, ClientError>) -> bool {
    matches!(result, Err(ClientError::APIError { code: 403, .. }))
}

#[test]
fn token_create_lookup_renew_revoke() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;

    let mut request = CreateTokenRequest::builder();
    request
        .policies(vec!["default".to_owned()])
        .ttl("1h")
        .display_name("e2e");
    let token = rt.block_on(vaultrs::token::new(&root, Some(&mut request)))?;
    assert!(!token.client_token.is_empty());
    assert!(!token.accessor.is_empty());
    assert_eq!(token.lease_duration, 3600);
    assert!(token.renewable);
    assert!(!token.orphan);

    let lookup = rt.block_on(vaultrs::token::lookup(&root, &token.client_token))?;
    assert_eq!(lookup.id, token.client_token);
    assert_eq!(lookup.accessor, token.accessor);
    assert_eq!(lookup.policies, ["default"]);
    assert_eq!(lookup.path, "auth/token/create");
    assert!(
        lookup.display_name.contains("e2e"),
        "{}",
        lookup.display_name
    );
    assert!(lookup.ttl > 0, "ttl {}", lookup.ttl);
    assert!(lookup.ttl <= 3600, "ttl {}", lookup.ttl);

    let renewed = rt.block_on(vaultrs::token::renew(
        &root,
        &token.client_token,
        Some("30m"),
    ))?;
    assert_eq!(renewed.client_token, token.client_token);
    assert_eq!(renewed.lease_duration, 1800);

    rt.block_on(vaultrs::token::revoke(&root, &token.client_token))?;
    let gone = rt.block_on(vaultrs::token::lookup(&root, &token.client_token));
    assert!(is_denied(gone), "a revoked token's lookup is a 403");
    Ok(())
}

#[test]
fn revoking_parent_revokes_children() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;

    let parent = rt.block_on(vaultrs::token::new(&root, None))?;
    let parent_client = vault_client(&server, &parent.client_token)?;
    let child = rt.block_on(vaultrs::token::new(&parent_client, None))?;
    let grandchild_client = vault_client(&server, &child.client_token)?;
    let grandchild = rt.block_on(vaultrs::token::new(&grandchild_client, None))?;
    let mut orphan_request = CreateTokenRequest::builder();
    orphan_request.no_parent(true);
    let orphan = rt.block_on(vaultrs::token::new(
        &parent_client,
        Some(&mut orphan_request),
    ))?;
    assert!(orphan.orphan, "a root-policy parent may create orphans");

    rt.block_on(vaultrs::token::revoke(&root, &parent.client_token))?;

    for token in [
        &parent.client_token,
        &child.client_token,
        &grandchild.client_token,
    ] {
        let lookup = rt.block_on(vaultrs::token::lookup(&root, token));
        assert!(is_denied(lookup), "a descendant of a revoked token is gone");
    }
    let still = rt.block_on(vaultrs::token::lookup(&root, &orphan.client_token))?;
    assert!(still.orphan);
    Ok(())
}

#[test]
fn child_token_cannot_gain_policies() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let rt = runtime();
    let root = vault_client(&server, &keys.root_token)?;

    let mut request = CreateTokenRequest::builder();
    request.policies(vec!["default".to_owned()]);
    let limited = rt.block_on(vaultrs::token::new(&root, Some(&mut request)))?;
    let limited_client = vault_client(&server, &limited.client_token)?;

    let mut escalate = CreateTokenRequest::builder();
    escalate.policies(vec!["root".to_owned()]);
    let result = rt.block_on(vaultrs::token::new(&limited_client, Some(&mut escalate)));
    assert!(
        result.is_err(),
        "a token cannot create a child with policies it lacks"
    );
    Ok(())
}
