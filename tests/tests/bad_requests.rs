//! Malformed requests get a 4xx with a message in `errors`, and the server keeps serving.

use coffer_tests::{Api, ApiResponse, Server, ServerOptions};
use reqwest::Method;
use serde_json::json;

fn assert_rejected(response: &ApiResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.text);
    assert_eq!(
        response.content_type.as_deref(),
        Some("application/json"),
        "{what}"
    );
    let errors = response.errors();
    assert!(
        errors.iter().any(|error| !error.is_empty()),
        "{what}: no message in errors: {}",
        response.text
    );
}

fn assert_still_serving(api: &Api) -> anyhow::Result<()> {
    api.put("secret/data/after", &json!({"data": {"ok": "yes"}}))?
        .expect_status(200)?;
    let read = api.get("secret/data/after")?;
    assert_eq!(
        read.body["data"]["data"]["ok"],
        json!("yes"),
        "{}",
        read.text
    );
    Ok(())
}

#[test]
fn malformed_bodies_and_paths_get_4xx() -> anyhow::Result<()> {
    let server = Server::start_with(ServerOptions::default().max_request_size(4096))?;
    let keys = server.init_and_unseal()?;
    let api = server.api(&keys.root_token)?;
    api.enable_kv("secret", "2")?;

    let broken = api.raw(
        Method::PUT,
        "secret/data/x",
        "application/json",
        b"{\"data\": {".to_vec(),
    )?;
    assert_rejected(&broken, 400, "truncated JSON");

    let array = api.raw(
        Method::PUT,
        "secret/data/x",
        "application/json",
        b"[1, 2]".to_vec(),
    )?;
    assert_rejected(&array, 400, "JSON array body");

    let patch = api.raw(
        Method::PATCH,
        "secret/data/x",
        "application/json",
        br#"{"data": {"a": "b"}}"#.to_vec(),
    )?;
    assert_rejected(&patch, 415, "PATCH without merge-patch content type");

    let value = "v".repeat(8192);
    let oversized = api.raw(
        Method::PUT,
        "secret/data/x",
        "application/json",
        json!({"data": {"big": value}}).to_string().into_bytes(),
    )?;
    assert_rejected(&oversized, 413, "body over max_request_size");

    let unknown = api.get("no/such/mount")?;
    assert_rejected(&unknown, 404, "unknown path");

    assert_still_serving(&api)?;
    let health = api.get("sys/health")?;
    assert_eq!(health.status, 200, "{}", health.text);
    Ok(())
}

#[test]
fn bad_unseal_key_is_rejected() -> anyhow::Result<()> {
    let server = Server::start()?;
    server.init(5, 3)?;
    let api = server.api("")?;
    let response = api.put("sys/unseal", &json!({"key": "not-a-key"}))?;
    assert_rejected(&response, 400, "invalid unseal key");
    let status = api.get("sys/seal-status")?;
    assert_eq!(
        status.body["progress"],
        json!(0),
        "a rejected key does not count"
    );
    Ok(())
}
