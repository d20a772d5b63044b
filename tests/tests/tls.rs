//! vaultrs over HTTPS, trusting the server's generated certificate through `ca_certs`.

use coffer_tests::{Server, ServerOptions, runtime, vault_client};
use serde_json::json;

#[test]
fn vaultrs_over_tls_with_ca_certificate() -> anyhow::Result<()> {
    let server = Server::start_with(ServerOptions::tls())?;
    assert!(server.address().starts_with("https://"));
    let rt = runtime();
    let client = vault_client(&server, "")?;

    let init = rt.block_on(vaultrs::sys::start_initialization(&client, 1, 1, None))?;
    let unsealed = rt.block_on(vaultrs::sys::unseal(
        &client,
        init.keys.first().cloned(),
        None,
        None,
    ))?;
    assert!(!unsealed.sealed);

    server.api(&init.root_token)?.enable_kv("secret", "2")?;
    let root = vault_client(&server, &init.root_token)?;
    rt.block_on(vaultrs::kv2::set(
        &root,
        "secret",
        "tls",
        &json!({"over": "https"}),
    ))?;
    let read: serde_json::Value = rt.block_on(vaultrs::kv2::read(&root, "secret", "tls"))?;
    assert_eq!(read, json!({"over": "https"}));
    Ok(())
}

#[test]
fn plain_http_to_tls_listener_fails() -> anyhow::Result<()> {
    let server = Server::start_with(ServerOptions::tls())?;
    let plain = server.address().replace("https://", "http://");
    let api = coffer_tests::Api::new(&plain, "", None)?;
    let result = api.get("sys/health");
    let rejected = match &result {
        Err(_) => true,
        Ok(response) => response.status >= 400,
    };
    assert!(rejected, "plain HTTP to a TLS listener got {result:?}");
    Ok(())
}
