use super::*;

const VAULT_STYLE: &str = r#"
ui            = true
api_addr      = "https://127.0.0.1:8200"
cluster_addr  = "https://127.0.0.1:8201"
disable_mlock = true
log_level     = "info"
log_format    = "json"
default_lease_ttl = "768h"
max_lease_ttl     = "24h"

storage "lmdb" { path = "/var/lib/coffer" }

listener "tcp" {
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_disable     = "1"
  max_request_size = 1048576
}

listener "tcp" {
  address       = "0.0.0.0:8300"
  tls_cert_file = "/etc/coffer/server.pem"
  tls_key_file  = "/etc/coffer/server.key"
  tls_min_version = "tls12"
}

replication {
  logshipper_buffer_length = 1000
  logshipper_buffer_size = "1048576"
  best_effort_wal_wait_duration = "2s"
}
"#;

fn invalid(text: &str) -> String {
    match parse_config(text) {
        Err(ConfigError::Invalid(message)) => message,
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn vault_style_hcl_parses() {
    let config = parse_config(VAULT_STYLE).unwrap();
    assert_eq!(config.api_addr.as_deref(), Some("https://127.0.0.1:8200"));
    assert_eq!(
        config.cluster_addr.as_deref(),
        Some("https://127.0.0.1:8201")
    );
    assert_eq!(config.log_level.as_deref(), Some("info"));
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(
        config.default_lease_ttl,
        Some(Duration::from_secs(2_764_800))
    );
    assert_eq!(config.max_lease_ttl, Some(Duration::from_secs(86_400)));
    assert_eq!(
        config.storage,
        Some(StorageConfig::Lmdb {
            path: "/var/lib/coffer".into(),
            map_size: None
        })
    );
}

#[test]
fn several_listeners_parse() {
    let config = parse_config(VAULT_STYLE).unwrap();
    assert_eq!(config.listeners.len(), 2);
    let plain = &config.listeners[0];
    assert_eq!(plain.address, "127.0.0.1:8200".parse().unwrap());
    assert_eq!(
        plain.cluster_address,
        Some("127.0.0.1:8201".parse().unwrap())
    );
    assert!(plain.tls_disable);
    assert_eq!(plain.max_request_size, 1_048_576);
    let tls = &config.listeners[1];
    assert!(!tls.tls_disable);
    assert_eq!(tls.tls_cert_file, Some("/etc/coffer/server.pem".into()));
    assert_eq!(tls.max_request_size, DEFAULT_MAX_REQUEST_SIZE);
}

#[test]
fn replication_block_is_stored() {
    let config = parse_config(VAULT_STYLE).unwrap();
    let replication = config.replication;
    assert_eq!(replication.logshipper_buffer_length, Some(1000));
    assert_eq!(replication.logshipper_buffer_size, Some(1_048_576));
    assert_eq!(
        replication.best_effort_wal_wait_duration,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn ignored_settings_give_warnings() {
    let config = parse_config(VAULT_STYLE).unwrap();
    let warnings = config.warnings.join("\n");
    assert!(warnings.contains("\"ui\""), "{warnings}");
    assert!(warnings.contains("\"disable_mlock\""), "{warnings}");
    assert!(warnings.contains("\"tls_min_version\""), "{warnings}");
}

#[test]
fn backend_is_storage_alias() {
    let config = parse_config(
        r#"
        backend "inmem" {}
        listener "tcp" { tls_disable = true }
        "#,
    )
    .unwrap();
    assert_eq!(config.storage, Some(StorageConfig::InMem));
    assert_eq!(
        config.listeners[0].address,
        DEFAULT_ADDRESS.parse().unwrap()
    );
}

#[test]
fn file_backend_maps_to_lmdb_with_warning() {
    let config = parse_config(r#"backend "file" { path = "/tmp/v" }"#).unwrap();
    assert!(matches!(config.storage, Some(StorageConfig::Lmdb { .. })));
    assert!(!config.warnings.is_empty());
}

#[test]
fn json_config_parses() {
    let config = parse_config(
        r#"{
          "api_addr": "http://127.0.0.1:8200",
          "backend": {"lmdb": {"path": "/data", "map_size": 1073741824}},
          "listener": [
            {"tcp": {"address": "127.0.0.1:8200", "tls_disable": true}},
            {"tcp": {"address": "127.0.0.1:8300", "tls_disable": "true"}}
          ],
          "replication": {"logshipper_buffer_length": 5},
          "ui": true
        }"#,
    )
    .unwrap();
    assert_eq!(config.listeners.len(), 2);
    assert!(config.listeners.iter().all(|listener| listener.tls_disable));
    assert_eq!(
        config.storage,
        Some(StorageConfig::Lmdb {
            path: "/data".into(),
            map_size: Some(1 << 30)
        })
    );
    assert_eq!(config.replication.logshipper_buffer_length, Some(5));
    assert_eq!(config.warnings.len(), 1);
}

#[test]
fn unknown_top_level_key_is_named_with_line() {
    let message = invalid("api_addr = \"x\"\n\nstorrage \"lmdb\" { path = \"/d\" }\n");
    assert!(message.contains("\"storrage\""), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn unknown_listener_key_is_named() {
    let message = invalid("listener \"tcp\" {\n  tls_disable = true\n  adress = \"x\"\n}\n");
    assert!(message.contains("\"adress\""), "{message}");
    assert!(message.contains("listener \"tcp\""), "{message}");
    assert!(message.contains("line 3"), "{message}");
}

#[test]
fn unknown_json_key_is_named() {
    let message = invalid(r#"{"max_lease": "1h"}"#);
    assert!(message.contains("\"max_lease\""), "{message}");
}

#[test]
fn bad_values_name_setting_and_expectation() {
    let cases = [
        ("max_lease_ttl = \"forever\"", "max_lease_ttl"),
        ("log_level = \"loud\"", "log_level"),
        ("log_format = \"xml\"", "log_format"),
        (
            "listener \"tcp\" {\n address = \"nowhere\"\n tls_disable = 1\n}",
            "address",
        ),
        (
            "listener \"tcp\" {\n tls_disable = \"maybe\"\n}",
            "tls_disable",
        ),
        (
            "listener \"tcp\" {\n tls_disable = true\n max_request_size = -1\n}",
            "max_request_size",
        ),
        ("storage \"lmdb\" {}", "path"),
        ("storage \"consul\" { path = \"x\" }", "consul"),
        ("listener \"unix\" {}", "unix"),
    ];
    for (text, name) in cases {
        let message = invalid(text);
        assert!(message.contains(name), "{text}: {message}");
    }
}

#[test]
fn tls_listener_needs_cert_and_key() {
    let message = invalid("listener \"tcp\" { address = \"127.0.0.1:8200\" }");
    assert!(message.contains("tls_cert_file"), "{message}");
}

#[test]
fn two_storage_blocks_are_rejected() {
    let message = invalid("storage \"inmem\" {}\nbackend \"inmem\" {}");
    assert!(message.contains("more than one storage"), "{message}");
}

#[test]
fn syntax_error_names_format() {
    assert!(matches!(
        parse_config("listener \"tcp\" {"),
        Err(ConfigError::Syntax { format: "HCL", .. })
    ));
    assert!(matches!(
        parse_config("{\"ui\": "),
        Err(ConfigError::Syntax { format: "JSON", .. })
    ));
}

#[test]
fn hcl_expressions_are_not_evaluated() {
    let message = invalid("api_addr = upper(\"x\")");
    assert!(
        message.contains("\"api_addr\" must be a literal"),
        "{message}"
    );
    let config = parse_config("api_addr = \"http://${host}:8200\"").unwrap();
    assert_eq!(config.api_addr.as_deref(), Some("http://${host}:8200"));
}

#[test]
fn merge_adds_listeners_and_overrides_settings() {
    let first = parse_config(
        "storage \"inmem\" {}\nlog_level = \"info\"\nlistener \"tcp\" { tls_disable = true }",
    )
    .unwrap();
    let second = parse_config(
        "log_level = \"debug\"\nlistener \"tcp\" {\n address = \"127.0.0.1:8300\"\n tls_disable = true\n}",
    )
    .unwrap();
    let merged = first.merge(second).unwrap();
    assert_eq!(merged.listeners.len(), 2);
    assert_eq!(merged.log_level.as_deref(), Some("debug"));
    assert_eq!(merged.storage, Some(StorageConfig::InMem));
}

#[test]
fn merge_rejects_two_storage_blocks() {
    let first = parse_config("storage \"inmem\" {}").unwrap();
    let second = parse_config("backend \"inmem\" {}").unwrap();
    let error = first.merge(second).unwrap_err().to_string();
    assert!(error.contains("storage block"), "{error}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parse_config_never_panics(text in "[ -~\n]{0,200}") {
            let _ = parse_config(&text);
        }

        #[test]
        fn parse_config_never_panics_on_blocks(
            key in "[a-z_]{1,12}",
            value in "(\"[ -~]{0,10}\"|[0-9]{1,5}|true|\\[\\]|\\{\\}|[a-z]+\\(\\))",
        ) {
            let text = format!("listener \"tcp\" {{\n {key} = {value}\n}}\n{key} = {value}\n");
            let _ = parse_config(&text);
        }
    }
}

#[test]
fn replication_block_maps_to_engine_settings() {
    let config = parse_config(
        r#"
        replication {
          logshipper_buffer_length = 1000
          logshipper_buffer_size = "1048576"
          wal_retain = 5000
          heartbeat_interval = "2s"
          heartbeat_timeout = "10s"
          best_effort_wal_wait_duration = "750ms"
        }
        "#,
    )
    .unwrap();
    let engine = config.replication.engine().unwrap();
    assert_eq!(engine.logshipper_buffer_length, 1000);
    assert_eq!(engine.logshipper_buffer_size, 1_048_576);
    assert_eq!(engine.wal_retain, 5000);
    assert_eq!(engine.heartbeat_interval, Duration::from_secs(2));
    assert_eq!(engine.heartbeat_timeout, Duration::from_secs(10));
    assert_eq!(
        engine.best_effort_wal_wait_duration,
        Duration::from_millis(750)
    );
}

#[test]
fn missing_replication_block_gives_engine_defaults() {
    let config = parse_config("").unwrap();
    let engine = config.replication.engine().unwrap();
    assert_eq!(
        engine,
        coffer_core::replication::ReplicationConfig::default()
    );
}

#[test]
fn zero_logshipper_length_is_rejected() {
    let message = invalid("replication { logshipper_buffer_length = 0 }");
    assert!(
        message.contains("logshipper_buffer_length = 0"),
        "{message}"
    );
    assert!(message.contains("at least 1"), "{message}");
}

#[test]
fn heartbeat_timeout_must_exceed_interval() {
    let message = invalid(
        r#"replication {
          heartbeat_interval = "5s"
          heartbeat_timeout = "5s"
        }"#,
    );
    assert!(message.contains("heartbeat_timeout"), "{message}");
    assert!(
        message.contains("longer than heartbeat_interval"),
        "{message}"
    );
}

#[test]
fn deep_nesting_is_rejected_before_parsing() {
    // A fuzzer found this text: the HCL parser's recursion overflowed a 2 MiB thread stack.
    let text =
        include_str!("../../../../fuzz/regressions/server_config/hcl-deep-brackets-stack-overflow");
    let error = parse_config(text).unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
    assert!(error.to_string().contains("levels deep"), "{error}");
}
