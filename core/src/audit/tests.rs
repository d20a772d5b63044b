use std::time::Duration;

use serde_json::{Value, json};

use crate::Ctx;
use crate::error::Error;
use crate::request::Operation::{Delete, List, Read, Update};
use crate::request::{Request, Response};
use crate::storage::{Partition, ReadOnly, Storage};
use crate::token::testing::{Node, auth_of, data_of};

use super::AuditRun;

const PASSWORD: &str = "correct-horse-battery-staple";
const SECRET: &str = "the-launch-code-is-0000";

fn enable(node: &mut Node, path: &str, options: Value) {
    let request = node.root_request(
        Update,
        &format!("sys/audit/{path}"),
        json!({"type": "file", "options": options}),
    );
    assert_eq!(node.ok(request), Response::NoContent);
}

fn begin(node: &mut Node, request: &Request) -> AuditRun {
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    node.storage
        .read(|txn| {
            let mut read_only = ReadOnly(txn);
            core.audit_begin(&mut Ctx::new(now, &mut *rng), request, &mut read_only)
        })
        .unwrap()
        .unwrap()
        .expect("a device is enabled")
}

fn audit_hash(node: &mut Node, path: &str, input: &str) -> String {
    let request = node.root_request(
        Update,
        &format!("sys/audit-hash/{path}"),
        json!({ "input": input }),
    );
    data_of(node.ok(request))["hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn enable_list_and_disable() {
    let mut node = Node::new();
    enable(
        &mut node,
        "file",
        json!({"file_path": "/var/log/coffer/audit.log"}),
    );
    enable(
        &mut node,
        "mine",
        json!({"path": "/tmp/a.log", "hmac_accessor": false}),
    );
    let request = node.root_request(Read, "sys/audit", json!({}));
    let data = data_of(node.ok(request));
    assert_eq!(data["file/"]["type"], json!("file"));
    assert_eq!(data["file/"]["path"], json!("file/"));
    assert_eq!(data["file/"]["local"], json!(false));
    assert_eq!(
        data["file/"]["options"],
        json!({"file_path": "/var/log/coffer/audit.log"})
    );
    assert_eq!(
        data["mine/"]["options"],
        json!({"file_path": "/tmp/a.log", "hmac_accessor": "false"})
    );
    assert!(data["file/"].get("hmac_key").is_none());

    let again = node.root_request(
        Update,
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": "/tmp/b.log"}}),
    );
    assert!(node.fail(again).to_string().contains("path already in use"));

    let disable = node.root_request(Delete, "sys/audit/file", json!({}));
    assert_eq!(node.ok(disable), Response::NoContent);
    let request = node.root_request(List, "sys/audit", json!({}));
    let keys: Vec<String> = data_of(node.ok(request)).keys().cloned().collect();
    assert_eq!(keys, ["mine/"]);
}

#[test]
fn enable_rejects_bad_options() {
    let mut node = Node::new();
    let cases = [
        (
            json!({"type": "syslog", "options": {}}),
            "unsupported audit device type",
        ),
        (json!({"type": "file", "options": {}}), "missing file_path"),
        (
            json!({"type": "file", "options": {"file_path": "audit.log"}}),
            "absolute path",
        ),
        (
            json!({"type": "file", "options": {"file_path": "/a", "log_raw": true}}),
            "log_raw",
        ),
        (
            json!({"type": "file", "options": {"file_path": "/a", "hmac_accessor": "maybe"}}),
            "hmac_accessor",
        ),
        (
            json!({"type": "file", "options": {"file_path": "/a", "mode": "999"}}),
            "invalid mode",
        ),
        (
            json!({"type": "file", "options": {"file_path": "/a", "colour": "red"}}),
            "unknown option",
        ),
    ];
    for (body, expected) in cases {
        let request = node.root_request(Update, "sys/audit/x", body.clone());
        let error = node.fail(request);
        assert_eq!(error.status(), 400, "{body}");
        assert!(error.to_string().contains(expected), "{body}: {error}");
    }
}

#[test]
fn device_table_follows_local_flag() {
    let mut node = Node::new();
    enable(&mut node, "shared", json!({"file_path": "/tmp/s.log"}));
    let local = node.root_request(
        Update,
        "sys/audit/here",
        json!({"type": "file", "local": true, "options": {"file_path": "/tmp/l.log"}}),
    );
    node.ok(local);
    let shared = node.storage.dump(Partition::Shared);
    let local = node.storage.dump(Partition::Local);
    assert!(shared.iter().any(|(key, _)| key == "core/audit"));
    assert!(local.iter().any(|(key, _)| key == "core/local-audit"));
    let stored = [shared, local].concat();
    for (key, value) in stored.iter().filter(|(key, _)| key.ends_with("audit")) {
        let text = String::from_utf8_lossy(value);
        assert!(!text.contains("/tmp/"), "{key} is stored in clear");
    }
}

#[test]
fn audit_hash_needs_a_device() {
    let mut node = Node::new();
    let request = node.root_request(Update, "sys/audit-hash/none", json!({"input": "x"}));
    let error = node.fail(request);
    assert_eq!(error.status(), 400);
    assert!(
        error.to_string().contains("unknown audit backend"),
        "{error}"
    );

    enable(&mut node, "file", json!({"file_path": "/tmp/f.log"}));
    enable(&mut node, "other", json!({"file_path": "/tmp/o.log"}));
    let hash = audit_hash(&mut node, "file", "abc");
    assert!(hash.starts_with("hmac-sha256:"), "{hash}");
    assert_eq!(hash.len(), "hmac-sha256:".len() + 64);
    assert_eq!(audit_hash(&mut node, "file", "abc"), hash);
    assert_ne!(
        audit_hash(&mut node, "other", "abc"),
        hash,
        "a key per device"
    );
}

#[test]
fn entries_hash_every_sensitive_field() {
    let mut node = Node::new();
    enable(
        &mut node,
        "file",
        json!({"file_path": "/tmp/f.log", "prefix": "coffer:"}),
    );
    let root = node.root.clone();
    let user = node.create_token(&root, json!({"ttl": "1h", "meta": {"team": "blue"}}));
    let token = user.client_token.expose().to_owned();

    let mut request = Request::new(Update, "sys/wrapping/wrap")
        .with_data(json!({"password": PASSWORD, "nested": {"list": [SECRET, 7]}}))
        .with_token(token.clone());
    request.id = "req-1".into();
    request.wrap_ttl = Some(Duration::from_secs(60));
    let run = begin(&mut node, &request);
    let result = match node.run(&request) {
        crate::Outcome::Response(response) => Ok(response),
        other => panic!("wrap failed: {other:?}"),
    };
    let Ok(Response::Logical(logical)) = &result else {
        panic!("wrap returns an envelope");
    };
    let wrap_info = logical.wrap_info.clone().unwrap();

    let request_lines = run.request_lines(node.now, &request);
    let response_lines = run.response_lines(node.now, &request, &result);
    assert_eq!(request_lines.len(), 1);
    assert_eq!(response_lines.len(), 1);
    assert_eq!(request_lines[0].file_path, "/tmp/f.log");
    assert_eq!(request_lines[0].file_mode, 0o600);
    let request_text = request_lines[0].text.strip_prefix("coffer:").unwrap();
    let response_text = response_lines[0].text.strip_prefix("coffer:").unwrap();
    let entry = parse(request_text);
    let response = parse(response_text);

    let hash = |node: &mut Node, value: &str| audit_hash(node, "file", value);
    assert_eq!(entry["type"], json!("request"));
    assert_eq!(entry["time"], json!(node.now.to_rfc3339()));
    assert_eq!(entry["error"], json!(""));
    assert_eq!(entry["request"]["id"], json!("req-1"));
    assert_eq!(entry["request"]["operation"], json!("update"));
    assert_eq!(entry["request"]["path"], json!("sys/wrapping/wrap"));
    assert_eq!(entry["request"]["wrap_ttl"], json!(60));
    assert_eq!(
        entry["request"]["client_token"],
        json!(hash(&mut node, &token))
    );
    assert_eq!(
        entry["auth"]["client_token"],
        json!(hash(&mut node, &token))
    );
    assert_eq!(
        entry["auth"]["accessor"],
        json!(hash(&mut node, &user.accessor))
    );
    assert_eq!(
        entry["request"]["client_token_accessor"],
        json!(hash(&mut node, &user.accessor))
    );
    assert_eq!(entry["auth"]["metadata"], json!({"team": "blue"}));
    assert_eq!(entry["auth"]["token_ttl"], json!(3600));
    assert_eq!(
        entry["request"]["data"]["password"],
        json!(hash(&mut node, PASSWORD))
    );
    assert_eq!(
        entry["request"]["data"]["nested"]["list"],
        json!([hash(&mut node, SECRET), 7])
    );

    assert_eq!(response["type"], json!("response"));
    let info = &response["response"]["wrap_info"];
    assert_eq!(
        info["token"],
        json!(hash(&mut node, wrap_info.token.expose()))
    );
    assert_eq!(
        info["accessor"],
        json!(hash(&mut node, &wrap_info.accessor))
    );
    assert_eq!(info["ttl"], json!(60));
    assert_eq!(info["creation_path"], json!("sys/wrapping/wrap"));

    for text in [request_text, response_text] {
        for secret in [
            PASSWORD,
            SECRET,
            &token,
            &user.accessor,
            wrap_info.token.expose(),
        ] {
            assert!(
                !text.contains(secret),
                "an entry holds a secret in clear: {text}"
            );
        }
    }
}

#[test]
fn response_auth_is_hashed() {
    let mut node = Node::new();
    enable(&mut node, "file", json!({"file_path": "/tmp/f.log"}));
    let request = node.root_request(Update, "auth/token/create", json!({"ttl": "10m"}));
    let run = begin(&mut node, &request);
    let response = node.ok(request.clone());
    let issued = auth_of(response.clone());
    let line = &run.response_lines(node.now, &request, &Ok(response))[0];
    let entry = parse(&line.text);
    let root = node.root.clone();
    assert_eq!(
        entry["response"]["auth"]["client_token"],
        json!(audit_hash(&mut node, "file", issued.client_token.expose()))
    );
    assert_eq!(
        entry["response"]["auth"]["accessor"],
        json!(audit_hash(&mut node, "file", &issued.accessor))
    );
    assert_eq!(entry["response"]["auth"]["token_ttl"], json!(600));
    for secret in [
        issued.client_token.expose(),
        issued.accessor.as_str(),
        root.as_str(),
    ] {
        assert!(!line.text.contains(secret), "{}", line.text);
    }
}

#[test]
fn hmac_accessor_false_keeps_accessor() {
    let mut node = Node::new();
    enable(
        &mut node,
        "plain",
        json!({"file_path": "/tmp/p.log", "hmac_accessor": "false"}),
    );
    let root = node.root.clone();
    let user = node.create_token(&root, json!({}));
    let request =
        Request::new(Read, "auth/token/lookup-self").with_token(user.client_token.expose());
    let run = begin(&mut node, &request);
    let entry = parse(&run.request_lines(node.now, &request)[0].text);
    assert_eq!(entry["auth"]["accessor"], json!(user.accessor));
    assert_ne!(
        entry["auth"]["client_token"],
        json!(user.client_token.expose())
    );
}

#[test]
fn error_entry_carries_the_message() {
    let mut node = Node::new();
    enable(&mut node, "file", json!({"file_path": "/tmp/f.log"}));
    let request = Request::new(Read, "secret/x").with_token("not-a-token");
    let run = begin(&mut node, &request);
    let error: Result<Response, Error> = Err(Error::permission_denied());
    let line = &run.response_lines(node.now, &request, &error)[0];
    let entry = parse(&line.text);
    assert_eq!(entry["error"], json!("permission denied"));
    assert_eq!(entry["auth"], json!({}));
    assert!(!line.text.contains("not-a-token"));
}

#[test]
fn unaudited_paths_and_no_devices_give_no_run() {
    let mut node = Node::new();
    let request = node.root_request(Read, "sys/mounts", json!({}));
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    let none = node
        .storage
        .read(|txn| {
            let mut read_only = ReadOnly(txn);
            core.audit_begin(&mut Ctx::new(now, &mut *rng), &request, &mut read_only)
        })
        .unwrap()
        .unwrap();
    assert!(none.is_none(), "no device is enabled");
    assert!(!super::is_audited("sys/health"));
    assert!(!super::is_audited("sys/seal-status"));
    assert!(super::is_audited("sys/mounts"));
}

#[test]
fn key_debug_hides_bytes() {
    let key = super::HmacKey::new(vec![0xab; 32]);
    assert_eq!(format!("{key:?}"), "HmacKey(..)");
}

#[test]
fn may_run_follows_token_and_policy() {
    let mut node = Node::new();
    let root = node.root.clone();
    let plain = node.create_token(&root, json!({"policies": ["default"]}));
    let enable = |token: &str| {
        Request::new(Update, "sys/audit/file")
            .with_data(json!({"type": "file", "options": {"file_path": "/tmp/x.log"}}))
            .with_token(token)
    };
    let may_run = |node: &mut Node, request: &Request| {
        let (core, rng, now) = (&node.core, &mut node.rng, node.now);
        node.storage
            .read(|txn| {
                let mut read_only = ReadOnly(txn);
                core.may_run(&mut Ctx::new(now, &mut *rng), request, &mut read_only)
            })
            .unwrap()
            .unwrap()
    };
    assert!(may_run(&mut node, &enable(&root)));
    assert!(!may_run(&mut node, &enable(plain.client_token.expose())));
    assert!(!may_run(&mut node, &enable("unknown-token")));
    assert!(!may_run(&mut node, &Request::new(Update, "sys/audit/file")));
}
