//! The `coffer` client commands against a running server.

use std::io::Write;
use std::process::{Command, Stdio};

use coffer_tests::{Server, ServerOptions, coffer_binary};
use serde_json::{Value, json};

/// The exit code and the output of one `coffer` run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `coffer ARGS` with VAULT_ADDR and VAULT_TOKEN set, and `stdin` as standard input.
fn coffer(address: &str, token: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    let home = tempfile::tempdir()?;
    let mut child = Command::new(coffer_binary()?)
        .args(args)
        .env("VAULT_ADDR", address)
        .env("VAULT_TOKEN", token)
        .env("HOME", home.path())
        .env_remove("VAULT_FORMAT")
        .env_remove("VAULT_CACERT")
        .env_remove("VAULT_SKIP_VERIFY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())?;
    }
    let output = child.wait_with_output()?;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl Run {
    fn assert_code(&self, expected: i32, what: &str) {
        assert_eq!(
            self.code,
            Some(expected),
            "{what}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

#[test]
fn status_exit_code_follows_seal_state() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init(5, 3)?;
    let sealed = coffer(&server.address(), "", &["status"], None)?;
    sealed.assert_code(2, "status of a sealed server");
    assert!(sealed.stdout.contains("Sealed"), "{}", sealed.stdout);
    assert!(sealed.stdout.contains("true"), "{}", sealed.stdout);

    server.unseal(&[&keys.keys[0], &keys.keys[1], &keys.keys[2]])?;
    let unsealed = coffer(&server.address(), "", &["status"], None)?;
    unsealed.assert_code(0, "status of an unsealed server");
    let json = coffer(&server.address(), "", &["status", "-format=json"], None)?;
    json.assert_code(0, "status -format=json");
    let body: Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(body["sealed"], json!(false));
    assert_eq!(body["t"], json!(3));
    Ok(())
}

#[test]
fn status_of_unreachable_server_exits_1() -> anyhow::Result<()> {
    let run = coffer("http://127.0.0.1:1", "", &["status"], None)?;
    run.assert_code(1, "status with nothing listening");
    assert!(!run.stderr.is_empty());
    Ok(())
}

#[test]
fn operator_init_and_unseal() -> anyhow::Result<()> {
    let server = Server::start()?;
    let address = server.address();
    let init = coffer(
        &address,
        "",
        &[
            "operator",
            "init",
            "-key-shares=5",
            "-key-threshold=3",
            "-format=json",
        ],
        None,
    )?;
    init.assert_code(0, "operator init");
    let body: Value = serde_json::from_str(&init.stdout)?;
    let keys = body["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 5, "{}", init.stdout);

    for key in &keys[3..5] {
        let key = key.as_str().unwrap_or_default();
        coffer(&address, "", &["operator", "unseal", key], None)?
            .assert_code(0, "operator unseal KEY");
    }
    let from_stdin = keys[0].as_str().unwrap_or_default();
    let last = coffer(
        &address,
        "",
        &["operator", "unseal"],
        Some(&format!("{from_stdin}\n")),
    )?;
    last.assert_code(0, "operator unseal with the key on standard input");
    coffer(&address, "", &["status"], None)?.assert_code(0, "status after unseal");

    let root = body["root_token"].as_str().unwrap_or_default();
    coffer(&address, root, &["operator", "seal"], None)?.assert_code(0, "operator seal");
    coffer(&address, "", &["status"], None)?.assert_code(2, "status after seal");
    Ok(())
}

#[test]
fn kv_put_get_and_json_read() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let (address, root) = (server.address(), keys.root_token.as_str());
    coffer(
        &address,
        root,
        &["secrets", "enable", "-path=secret", "-version=2", "kv"],
        None,
    )?
    .assert_code(0, "secrets enable kv v2");

    coffer(
        &address,
        root,
        &["kv", "put", "secret/app", "user=alice", "pass=-"],
        Some("s3cret"),
    )?
    .assert_code(0, "kv put");
    let field = coffer(
        &address,
        root,
        &["kv", "get", "-field=pass", "secret/app"],
        None,
    )?;
    field.assert_code(0, "kv get -field");
    assert_eq!(field.stdout.trim(), "s3cret");
    let mounted = coffer(&address, root, &["kv", "get", "-mount=secret", "app"], None)?;
    mounted.assert_code(0, "kv get -mount");
    assert!(mounted.stdout.contains("alice"), "{}", mounted.stdout);

    let json = coffer(
        &address,
        root,
        &["-format=json", "read", "secret/data/app"],
        None,
    )?;
    json.assert_code(0, "-format=json read");
    let body: Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(
        body["data"]["data"],
        json!({"user": "alice", "pass": "s3cret"})
    );
    assert_eq!(body["data"]["metadata"]["version"], json!(1));

    let listed = coffer(&address, root, &["kv", "list", "secret/"], None)?;
    listed.assert_code(0, "kv list");
    assert!(
        listed.stdout.lines().any(|line| line.trim() == "app"),
        "{}",
        listed.stdout
    );

    coffer(&address, root, &["kv", "delete", "secret/app"], None)?.assert_code(0, "kv delete");
    let missing = coffer(&address, root, &["read", "secret/data/app"], None)?;
    missing.assert_code(2, "read of a deleted secret");
    assert!(
        missing.stderr.contains("No value found at secret/data/app"),
        "{}",
        missing.stderr
    );

    // A path no mount serves is an error with the server's reason, not an empty value.
    let unmounted = coffer(&address, root, &["write", "nowhere/app", "a=b"], None)?;
    unmounted.assert_code(2, "write to an unmounted path");
    assert!(
        unmounted
            .stderr
            .contains("no handler for route \"nowhere/app\""),
        "{}",
        unmounted.stderr
    );
    Ok(())
}

#[test]
fn write_list_delete_on_kv1() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let (address, root) = (server.address(), keys.root_token.as_str());
    coffer(
        &address,
        root,
        &["secrets", "enable", "-path=kv1", "kv"],
        None,
    )?
    .assert_code(0, "secrets enable kv");
    let listed = coffer(&address, root, &["secrets", "list"], None)?;
    assert!(listed.stdout.contains("kv1/"), "{}", listed.stdout);

    coffer(&address, root, &["write", "kv1/a", "x=1", "y=two"], None)?.assert_code(0, "write");
    coffer(&address, root, &["kv", "put", "kv1/b", "z=3"], None)?.assert_code(0, "kv put on v1");
    let read = coffer(&address, root, &["read", "kv1/a"], None)?;
    read.assert_code(0, "read");
    assert!(
        read.stdout
            .lines()
            .any(|line| line.starts_with('y') && line.ends_with("two"))
    );
    let kv_get = coffer(&address, root, &["kv", "get", "-field=z", "kv1/b"], None)?;
    assert_eq!(kv_get.stdout.trim(), "3");

    let keys_listed = coffer(&address, root, &["list", "kv1"], None)?;
    keys_listed.assert_code(0, "list");
    let lines = keys_listed
        .stdout
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>();
    assert_eq!(lines, ["Keys", "----", "a", "b"]);

    coffer(&address, root, &["delete", "kv1/a"], None)?.assert_code(0, "delete");
    coffer(&address, root, &["read", "kv1/a"], None)?.assert_code(2, "read after delete");
    coffer(&address, root, &["write", "kv1/c"], None)?.assert_code(1, "write without data");
    Ok(())
}

#[test]
fn token_and_policy_commands() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let (address, root) = (server.address(), keys.root_token.as_str());
    coffer(
        &address,
        root,
        &["secrets", "enable", "-path=kv1", "kv"],
        None,
    )?
    .assert_code(0, "secrets enable");
    coffer(&address, root, &["write", "kv1/open", "a=1"], None)?.assert_code(0, "write open");
    coffer(&address, root, &["write", "kv1/closed", "a=1"], None)?.assert_code(0, "write closed");

    let rules = "path \"kv1/open\" {\n  capabilities = [\"read\"]\n}\n";
    coffer(
        &address,
        root,
        &["policy", "write", "reader", "-"],
        Some(rules),
    )?
    .assert_code(0, "policy write from stdin");
    let read = coffer(&address, root, &["policy", "read", "reader"], None)?;
    assert_eq!(read.stdout.trim(), rules.trim());
    let listed = coffer(&address, root, &["policy", "list"], None)?;
    assert!(
        listed.stdout.lines().any(|line| line.trim() == "reader"),
        "{}",
        listed.stdout
    );

    let created = coffer(
        &address,
        root,
        &[
            "token",
            "create",
            "-policy=reader",
            "-ttl=1h",
            "-field=token",
        ],
        None,
    )?;
    created.assert_code(0, "token create");
    let token = created.stdout.trim().to_owned();
    assert!(!token.is_empty());

    coffer(&address, &token, &["read", "kv1/open"], None)?.assert_code(0, "allowed read");
    let denied = coffer(&address, &token, &["read", "kv1/closed"], None)?;
    denied.assert_code(2, "denied read");
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );

    let lookup = coffer(&address, &token, &["token", "lookup"], None)?;
    lookup.assert_code(0, "token lookup-self");
    assert!(lookup.stdout.contains("reader"), "{}", lookup.stdout);
    coffer(&address, root, &["token", "revoke", &token], None)?.assert_code(0, "token revoke");
    coffer(&address, &token, &["read", "kv1/open"], None)?.assert_code(2, "revoked token");
    coffer(&address, root, &["policy", "delete", "reader"], None)?.assert_code(0, "policy delete");
    Ok(())
}

#[test]
fn status_over_tls_with_cacert() -> anyhow::Result<()> {
    let server = Server::start_with(ServerOptions::tls())?;
    server.init_and_unseal()?;
    let ca = server
        .ca_certificate_path()
        .map(|path| path.display().to_string());
    let ca = ca.unwrap_or_default();
    let untrusted = coffer(&server.address(), "", &["status"], None)?;
    untrusted.assert_code(1, "status without the CA certificate");

    let output = Command::new(coffer_binary()?)
        .arg("status")
        .env("VAULT_ADDR", server.address())
        .env("VAULT_CACERT", &ca)
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let skipped = Command::new(coffer_binary()?)
        .arg("status")
        .env("VAULT_ADDR", server.address())
        .env("VAULT_SKIP_VERIFY", "true")
        .env_remove("VAULT_CACERT")
        .output()?;
    let stderr = String::from_utf8_lossy(&skipped.stderr);
    assert_eq!(
        skipped.status.code(),
        Some(0),
        "VAULT_SKIP_VERIFY=true: {stderr}"
    );
    Ok(())
}

#[test]
fn generate_root_decode_runs_locally() -> anyhow::Result<()> {
    // "hvs.x" XOR "abcde", base64 without padding; no server is involved.
    let otp = "abcde";
    let xored = "hvs.x"
        .bytes()
        .zip(otp.bytes())
        .map(|(a, b)| a ^ b)
        .collect::<Vec<_>>();
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, xored);
    let decode = format!("-decode={encoded}");
    let otp_flag = format!("-otp={otp}");
    let run = coffer(
        "http://127.0.0.1:1",
        "",
        &["operator", "generate-root", &decode, &otp_flag],
        None,
    )?;
    run.assert_code(0, "generate-root -decode");
    assert_eq!(run.stdout.trim(), "hvs.x");
    Ok(())
}

#[test]
fn generate_root_with_threshold_of_keys() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let address = server.address();
    let json_of = |run: &Run| -> anyhow::Result<Value> { Ok(serde_json::from_str(&run.stdout)?) };

    let started = coffer(
        &address,
        "",
        &["operator", "generate-root", "-init", "-format=json"],
        None,
    )?;
    started.assert_code(0, "generate-root -init");
    let attempt = json_of(&started)?;
    let nonce = attempt["nonce"].as_str().unwrap_or_default().to_owned();
    let otp = attempt["otp"].as_str().unwrap_or_default().to_owned();
    assert!(!nonce.is_empty(), "{}", started.stdout);
    assert!(!otp.is_empty(), "{}", started.stdout);

    let nonce_flag = format!("-nonce={nonce}");
    let mut last = Value::Null;
    for key in &keys.keys[..3] {
        let args = [
            "operator",
            "generate-root",
            "-format=json",
            &nonce_flag,
            key,
        ];
        let run = coffer(&address, "", &args, None)?;
        run.assert_code(0, "generate-root KEY");
        last = json_of(&run)?;
    }
    assert_eq!(last["complete"], json!(true), "{last}");
    let encoded = last["encoded_token"].as_str().unwrap_or_default();

    let decode = format!("-decode={encoded}");
    let otp_flag = format!("-otp={otp}");
    let decoded = coffer(
        &address,
        "",
        &["operator", "generate-root", &decode, &otp_flag],
        None,
    )?;
    decoded.assert_code(0, "generate-root -decode");
    let new_root = decoded.stdout.trim();
    assert_ne!(new_root, keys.root_token);

    let lookup = server.api(new_root)?.get("auth/token/lookup-self")?;
    assert_eq!(lookup.status, 200, "{}", lookup.text);
    assert_eq!(lookup.body["data"]["policies"], json!(["root"]));
    Ok(())
}

#[test]
fn kv_get_with_read_under_mount_only() -> anyhow::Result<()> {
    let server = Server::start()?;
    let keys = server.init_and_unseal()?;
    let (address, root) = (server.address(), keys.root_token.as_str());
    coffer(
        &address,
        root,
        &["secrets", "enable", "-path=secret", "-version=2", "kv"],
        None,
    )?
    .assert_code(0, "secrets enable kv v2");
    coffer(
        &address,
        root,
        &["kv", "put", "secret/public/a", "v=1"],
        None,
    )?
    .assert_code(0, "kv put");
    let rules = "path \"secret/data/public/*\" {\n  capabilities = [\"read\"]\n}\n";
    coffer(
        &address,
        root,
        &["policy", "write", "public-reader", "-"],
        Some(rules),
    )?
    .assert_code(0, "policy write");
    let created = coffer(
        &address,
        root,
        &["token", "create", "-policy=public-reader", "-field=token"],
        None,
    )?;
    created.assert_code(0, "token create");
    let token = created.stdout.trim().to_owned();

    let read = coffer(
        &address,
        &token,
        &["kv", "get", "-field=v", "secret/public/a"],
        None,
    )?;
    read.assert_code(0, "kv get with read on the data path only");
    assert_eq!(read.stdout.trim(), "1");
    Ok(())
}
