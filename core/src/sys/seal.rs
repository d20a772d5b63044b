//! Seal, unseal, init, generate-root, rekey, key rotation, health and leader.
//!
//! Every route here except `sys/key-status`, `sys/rotate` and `sys/seal` returns a raw JSON
//! body with no envelope, as Vault does.

use serde_json::{Map, Value, json};

use crate::Core;
use crate::barrier::{generate_root, init, params, rekey, rotate, unseal};
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

/// Serves `sys/init`, `sys/seal-status`, `sys/unseal`, `sys/seal`, `sys/generate-root/*`,
/// `sys/rekey/*`, `sys/rotate`, `sys/key-status`, `sys/health` and `sys/leader`, or returns
/// `None` for any other path.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let operation = request.operation;
    let data = &request.data;
    let result = match request.path.trim_end_matches('/') {
        "sys/init" => match operation {
            Operation::Read => init::status(txn).map(Response::raw),
            Operation::Update => init::initialize(core, ctx, data, txn).map(Response::raw),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/seal-status" => read_only(operation, || unseal::seal_status(core, txn)),
        "sys/unseal" => match operation {
            Operation::Update => unseal::unseal(core, ctx, data, txn).map(Response::raw),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/seal" => seal(core, operation, caller),
        "sys/health" => match operation {
            Operation::Read => health(core, ctx, data, txn),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/leader" => read_only(operation, || Ok(leader())),
        "sys/key-status" => match operation {
            Operation::Read => rotate::key_status(core).map(Response::data),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/rotate" | "sys/rotate/keyring" => match operation {
            Operation::Update => rotate::rotate(core, ctx, txn).map(|()| Response::NoContent),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/generate-root/attempt" => generate_root_attempt(core, ctx, request, txn),
        "sys/generate-root/update" => match operation {
            Operation::Update => generate_root::update(core, ctx, data, txn).map(Response::raw),
            _ => Err(Error::unsupported_operation()),
        },
        "sys/rekey/init" => rekey_init(core, ctx, request, txn),
        "sys/rekey/update" => match operation {
            Operation::Update => rekey::update(core, ctx, data, txn).map(Response::raw),
            _ => Err(Error::unsupported_operation()),
        },
        _ => return None,
    };
    Some(result)
}

fn read_only(
    operation: Operation,
    body: impl FnOnce() -> Result<Value, Error>,
) -> Result<Response, Error> {
    match operation {
        Operation::Read => body().map(Response::raw),
        _ => Err(Error::unsupported_operation()),
    }
}

fn seal(core: &Core, operation: Operation, caller: Option<&Caller>) -> Result<Response, Error> {
    if operation != Operation::Update {
        return Err(Error::unsupported_operation());
    }
    let is_root = caller.is_some_and(Caller::is_root);
    unseal::seal(core, is_root).map(|()| Response::NoContent)
}

fn generate_root_attempt(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    match request.operation {
        Operation::Read => generate_root::status(core, txn).map(Response::raw),
        Operation::Update => generate_root::start(core, ctx, &request.data, txn).map(Response::raw),
        Operation::Delete => {
            generate_root::cancel(core);
            Ok(Response::NoContent)
        }
        _ => Err(Error::unsupported_operation()),
    }
}

fn rekey_init(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    match request.operation {
        Operation::Read => rekey::status(core, txn).map(Response::raw),
        Operation::Update => rekey::start(core, ctx, &request.data, txn).map(Response::raw),
        Operation::Delete => {
            rekey::cancel(core);
            Ok(Response::NoContent)
        }
        _ => Err(Error::unsupported_operation()),
    }
}

/// The status codes `sys/health` returns in each state, after the query's overrides.
struct HealthCodes {
    active: u16,
    sealed: u16,
    uninit: u16,
}

impl HealthCodes {
    fn parse(data: &Map<String, Value>) -> Result<HealthCodes, Error> {
        // The standby, DR and performance-standby codes and flags are checked for validity but
        // never used: this node is always active.
        for name in ["standbycode", "drsecondarycode", "performancestandbycode"] {
            status_code(data, name, 200)?;
        }
        for name in ["removedcode", "haunhealthycode"] {
            status_code(data, name, 200)?;
        }
        params::boolean(data, "standbyok")?;
        params::boolean(data, "perfstandbyok")?;
        Ok(HealthCodes {
            active: status_code(data, "activecode", 200)?,
            sealed: status_code(data, "sealedcode", 503)?,
            uninit: status_code(data, "uninitcode", 501)?,
        })
    }
}

fn status_code(data: &Map<String, Value>, name: &str, default: u16) -> Result<u16, Error> {
    let invalid = || {
        Error::bad_request(format!(
            "invalid value for {name}: expected an HTTP status code between 200 and 599"
        ))
    };
    let Some(code) = params::integer(data, name).map_err(|_| invalid())? else {
        return Ok(default);
    };
    u16::try_from(code)
        .ok()
        // A 1xx code would make the server send an informational response (101 switches
        // protocols) and never the health body, so only final codes are accepted.
        .filter(|code| (200..=599).contains(code))
        .ok_or_else(invalid)
}

fn health(
    core: &Core,
    ctx: &Ctx<'_>,
    data: &Map<String, Value>,
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    let codes = HealthCodes::parse(data)?;
    let initialized = init::is_initialized(txn)?;
    let sealed = core.barrier.is_sealed();
    let status = if !initialized {
        codes.uninit
    } else if sealed {
        codes.sealed
    } else {
        codes.active
    };
    let mut body = json!({
        "initialized": initialized,
        "sealed": sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": crate::replication::role::stored_mode(txn)?,
        "replication_dr_mode": "disabled",
        "server_time_utc": ctx.now.as_secs(),
        "version": core.config.version,
        "enterprise": false,
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
        "replication_primary_canary_age_ms": 0,
    });
    let audit_failures = core.audit_status.failures();
    if !audit_failures.is_empty() {
        body["audit_device_failures"] = json!(audit_failures);
    }
    if !sealed {
        if let Some(cluster) = crate::barrier::seal::read_cluster_info(txn)? {
            body["cluster_name"] = Value::from(cluster.name);
            body["cluster_id"] = Value::from(cluster.id);
        }
    }
    Ok(Response::Raw { status, body })
}

fn leader() -> Value {
    json!({
        "ha_enabled": false,
        "is_self": false,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": "",
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::testing::{TestNode, body_of, status_of};

    fn health_request(node: &mut TestNode, query: Value) -> Result<Response, Error> {
        let request = Request::new(Operation::Read, "sys/health").with_data(query);
        node.request(request)
    }

    #[test]
    fn health_status_follows_seal_state() {
        let mut node = TestNode::new();
        let uninit = health_request(&mut node, json!({})).unwrap();
        assert_eq!(status_of(&uninit), 501);
        assert_eq!(body_of(uninit)["initialized"], json!(false));
        let keys = node.init_without_token(3, 2);
        let sealed = health_request(&mut node, json!({})).unwrap();
        assert_eq!(status_of(&sealed), 503);
        assert_eq!(body_of(sealed)["sealed"], json!(true));
        node.unseal(&keys[0]).unwrap();
        node.unseal(&keys[1]).unwrap();
        let active = health_request(&mut node, json!({})).unwrap();
        assert_eq!(status_of(&active), 200);
        let body = body_of(active);
        assert_eq!(body["initialized"], json!(true));
        assert_eq!(body["sealed"], json!(false));
        assert_eq!(body["standby"], json!(false));
        assert_eq!(body["performance_standby"], json!(false));
        assert_eq!(body["replication_performance_mode"], json!("disabled"));
        assert_eq!(body["replication_dr_mode"], json!("disabled"));
        assert_eq!(body["server_time_utc"], json!(node.now.as_secs()));
        assert_eq!(body["version"], json!(node.core.config.version));
        assert!(body["cluster_id"].is_string());
        assert_eq!(body["enterprise"], json!(false));
    }

    #[test]
    fn health_codes_can_be_overridden() {
        let mut node = TestNode::new();
        let overridden = health_request(&mut node, json!({"uninitcode": "299"})).unwrap();
        assert_eq!(status_of(&overridden), 299);
        let keys = node.init_without_token(3, 2);
        let sealed = health_request(&mut node, json!({"sealedcode": "299", "standbyok": "true"}));
        assert_eq!(status_of(&sealed.unwrap()), 299);
        node.unseal(&keys[0]).unwrap();
        node.unseal(&keys[1]).unwrap();
        let active = health_request(&mut node, json!({"activecode": 204})).unwrap();
        assert_eq!(status_of(&active), 204);
    }

    #[test]
    fn non_integer_health_code_is_rejected() {
        let mut node = TestNode::new();
        for query in [json!({"activecode": "abc"}), json!({"sealedcode": "7000"})] {
            let error = health_request(&mut node, query.clone()).unwrap_err();
            assert_eq!(error.status(), 400, "query {query}");
            assert!(error.to_string().contains("HTTP status code"), "{error}");
        }
    }

    #[test]
    fn informational_health_code_is_rejected() {
        let mut node = TestNode::new();
        for code in ["100", "101", "199", "600", "0", "-200"] {
            for name in ["activecode", "sealedcode", "uninitcode", "standbycode"] {
                let query = json!({ name: code });
                let error = health_request(&mut node, query).unwrap_err();
                assert_eq!(error.status(), 400, "{name}={code}");
                let message = error.to_string();
                assert!(message.contains(name), "{message}");
                assert!(message.contains("between 200 and 599"), "{message}");
            }
        }
        let lowest = health_request(&mut node, json!({"uninitcode": "200"})).unwrap();
        assert_eq!(status_of(&lowest), 200);
    }

    #[test]
    fn leader_reports_no_ha() {
        let mut node = TestNode::new();
        let response = node
            .request(Request::new(Operation::Read, "sys/leader"))
            .unwrap();
        let body = body_of(response);
        assert_eq!(body["ha_enabled"], json!(false));
        assert_eq!(body["is_self"], json!(false));
        assert_eq!(body["leader_address"], json!(""));
        assert_eq!(body["active_time"], json!("0001-01-01T00:00:00Z"));
    }

    #[test]
    fn other_paths_are_not_routed_here() {
        let mut node = TestNode::new();
        let error = node
            .request_as_root(Request::new(Operation::Read, "sys/sealed-thing"))
            .unwrap_err();
        assert_eq!(error.status(), 404);
    }

    #[test]
    fn wrong_operation_is_unsupported() {
        let mut node = TestNode::new();
        let error = node
            .request(Request::new(Operation::Delete, "sys/unseal"))
            .unwrap_err();
        assert_eq!(error, Error::unsupported_operation());
    }
}
