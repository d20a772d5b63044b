//! Misused activation tokens: each fails with its own message and leaves the would-be
//! secondary exactly as it was.

use std::time::Duration;

use coffer_tests::cluster::{activate, enable_primary, performance_status, secondary_token};
use coffer_tests::{InitKeys, Server};
use serde_json::{Value, json};

/// A standalone server with a marker secret, to check that a failed activation changed nothing.
struct Bystander {
    server: Server,
    keys: InitKeys,
}

impl Bystander {
    fn start() -> anyhow::Result<Bystander> {
        let server = Server::start()?;
        let keys = server.init_and_unseal()?;
        let api = server.api(&keys.root_token)?;
        api.enable_kv("mine", "1")?;
        api.post("mine/marker", &json!({"value": "untouched"}))?
            .expect_status(204)?;
        Ok(Bystander { server, keys })
    }

    fn activate(&self, token: &str) -> anyhow::Result<(u16, String)> {
        let response = activate(&self.server, &self.keys.root_token, token)?;
        Ok((response.status, response.errors().join(" ")))
    }

    fn activate_with(&self, body: &Value) -> anyhow::Result<(u16, String)> {
        let response = self
            .server
            .api(&self.keys.root_token)?
            .post("sys/replication/performance/secondary/enable", body)?;
        Ok((response.status, response.errors().join(" ")))
    }

    fn assert_unchanged(&self) -> anyhow::Result<()> {
        let read = self.server.api(&self.keys.root_token)?.get("mine/marker")?;
        assert_eq!(read.status, 200, "{}", read.text);
        assert_eq!(read.body["data"]["value"], "untouched");
        assert_eq!(performance_status(&self.server)?["mode"], "disabled");
        Ok(())
    }
}

fn start_primary() -> anyhow::Result<(Server, InitKeys)> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    enable_primary(&server, &keys.root_token)?;
    Ok((server, keys))
}

#[test]
fn used_token_changes_nothing() -> anyhow::Result<()> {
    let (primary, keys) = start_primary()?;
    let token = secondary_token(&primary, &keys.root_token, "east")?;
    let first = Bystander::start()?;
    assert_eq!(first.activate(&token)?.0, 200);

    let second = Bystander::start()?;
    let (status, message) = second.activate(&token)?;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("step 1"), "{message}");
    assert!(message.contains("already used"), "{message}");
    assert!(
        message.contains("wrapping token is not valid or does not exist"),
        "{message}"
    );
    second.assert_unchanged()
}

#[test]
fn expired_token_changes_nothing() -> anyhow::Result<()> {
    let (primary, keys) = start_primary()?;
    let response = primary.api(&keys.root_token)?.post(
        "sys/replication/performance/primary/secondary-token",
        &json!({"id": "east", "ttl": "1s"}),
    )?;
    response.expect_status(200)?;
    let token = response.body["wrap_info"]["token"]
        .as_str()
        .expect("secondary-token returns wrap_info.token")
        .to_owned();
    std::thread::sleep(Duration::from_millis(2100));

    let bystander = Bystander::start()?;
    let (status, message) = bystander.activate(&token)?;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("expired"), "{message}");
    bystander.assert_unchanged()
}

#[test]
fn changed_signature_changes_nothing() -> anyhow::Result<()> {
    let (primary, keys) = start_primary()?;
    let token = secondary_token(&primary, &keys.root_token, "east")?;
    let (head, signature) = token.rsplit_once('.').expect("a JWT has three parts");
    let mut changed: Vec<char> = signature.chars().collect();
    changed[4] = if changed[4] == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}.{}", changed.into_iter().collect::<String>());

    let bystander = Bystander::start()?;
    let (status, message) = bystander.activate(&forged)?;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("signature"), "{message}");
    bystander.assert_unchanged()?;

    let genuine = bystander.activate(&token)?;
    assert_eq!(
        genuine.0, 200,
        "the genuine token still works: {}",
        genuine.1
    );
    Ok(())
}

#[test]
fn foreign_primary_token_changes_nothing() -> anyhow::Result<()> {
    let (primary, _) = start_primary()?;
    let (other, other_keys) = start_primary()?;
    let token = secondary_token(&other, &other_keys.root_token, "east")?;

    let bystander = Bystander::start()?;
    let (status, message) = bystander.activate_with(&json!({
        "token": token,
        "primary_api_addr": primary.address(),
    }))?;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("step 1"), "{message}");
    assert!(message.contains("signature"), "{message}");
    bystander.assert_unchanged()
}

#[test]
fn stolen_public_key_token_activates_nothing() -> anyhow::Result<()> {
    let (primary, keys) = start_primary()?;
    let owner = Bystander::start()?;
    let generated = owner.server.api(&owner.keys.root_token)?.post(
        "sys/replication/performance/secondary/generate-public-key",
        &json!({}),
    )?;
    generated.expect_status(200)?;
    let public_key = generated.body["data"]["secondary_public_key"]
        .as_str()
        .expect("generate-public-key returns secondary_public_key")
        .to_owned();
    let response = primary.api(&keys.root_token)?.post(
        "sys/replication/performance/primary/secondary-token",
        &json!({"id": "east", "secondary_public_key": public_key}),
    )?;
    response.expect_status(200)?;
    let token = response.body["wrap_info"]["token"]
        .as_str()
        .expect("secondary-token returns wrap_info.token")
        .to_owned();

    let thief = Bystander::start()?;
    let (status, message) = thief.activate(&token)?;
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("no generated key"), "{message}");
    thief.assert_unchanged()?;
    owner.assert_unchanged()
}
