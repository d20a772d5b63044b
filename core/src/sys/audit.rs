//! `sys/audit` and `sys/audit-hash`: listing, enabling and disabling audit devices, and hashing
//! a value as a device does.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::Core;
use crate::audit::{self, AuditDevice, HmacKey};
use crate::engines::params;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Transaction;

/// The options a `file` device accepts.
const FILE_OPTIONS: &[&str] = &[
    "file_path",
    "path",
    "mode",
    "format",
    "prefix",
    "log_raw",
    "hmac_accessor",
];

/// Serves `sys/audit`, `sys/audit/<path>` and `sys/audit-hash/<path>`, or returns `None` for
/// other paths.
pub(super) fn route(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    txn: &mut dyn Transaction,
) -> Option<Result<Response, Error>> {
    let rest = request.path.strip_prefix("sys/")?;
    if let Some(path) = rest.strip_prefix("audit-hash/") {
        return Some(match request.operation {
            Operation::Update => hash(core, request, path, txn),
            _ => Err(Error::unsupported_operation()),
        });
    }
    if rest.trim_end_matches('/') == "audit" {
        return Some(match request.operation {
            Operation::Read | Operation::List => list(core, txn),
            _ => Err(Error::unsupported_operation()),
        });
    }
    let path = rest.strip_prefix("audit/")?;
    Some(match request.operation {
        Operation::Update => enable(core, ctx, request, path, txn),
        Operation::Delete => disable(core, ctx, path, txn),
        _ => Err(Error::unsupported_operation()),
    })
}

fn list(core: &Core, txn: &dyn Transaction) -> Result<Response, Error> {
    let data: Map<String, Value> = audit::list_devices(core, txn)?
        .iter()
        .map(|device| (device.path.clone(), device.to_json()))
        .collect();
    Ok(Response::data(data))
}

/// Returns `path` with one trailing slash, or a 400 for an empty or odd path.
fn device_path(raw: &str) -> Result<String, Error> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::bad_request(
            "missing audit device path: name it in the URL, such as sys/audit/file",
        ));
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(Error::bad_request(format!(
            "invalid audit device path {raw:?}: segments may not be empty, \".\" or \"..\""
        )));
    }
    Ok(format!("{trimmed}/"))
}

fn enable(
    core: &Core,
    ctx: &mut Ctx<'_>,
    request: &Request,
    raw_path: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let path = device_path(raw_path)?;

    let kind = params::string(&request.data, "type")?.unwrap_or_default();
    if kind != "file" {
        return Err(Error::bad_request(format!(
            "unsupported audit device type {kind:?}: this server records to \"file\" devices only"
        )));
    }
    let description = params::string(&request.data, "description")?.unwrap_or_default();
    let local = params::boolean(&request.data, "local")?.unwrap_or(false);
    let options = file_options(&request.data)?;

    let devices = audit::list_devices(core, txn)?;
    if devices.iter().any(|device| device.path == path) {
        return Err(Error::bad_request(format!(
            "path already in use: an audit device is enabled at {path:?}; disable it first"
        )));
    }

    let key_bytes = Zeroizing::new(crate::ids::bytes::<32>(&mut *ctx.rng));
    let hmac_key = HmacKey::new(key_bytes.to_vec());
    let device = AuditDevice {
        path,
        kind,
        description,
        options,
        local,
        hmac_key,
    };
    let mut half: Vec<AuditDevice> = devices
        .into_iter()
        .filter(|existing| existing.local == local)
        .collect();
    half.push(device);
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    audit::save_devices(&mut view, local, half)?;
    Ok(Response::NoContent)
}

/// Checks a `file` device's options and returns them as strings, with the legacy `path` moved
/// to `file_path`.
fn file_options(data: &Map<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    let mut options = BTreeMap::new();
    if let Some(given) = data.get("options").filter(|value| !value.is_null()) {
        let Value::Object(given) = given else {
            return Err(Error::bad_request(
                "invalid options: send a JSON object of strings",
            ));
        };
        for (name, value) in given {
            if !FILE_OPTIONS.contains(&name.as_str()) {
                return Err(Error::bad_request(format!(
                    "unknown option {name:?} for a file audit device: use one of {}",
                    FILE_OPTIONS.join(", ")
                )));
            }
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Bool(flag) => flag.to_string(),
                Value::Number(number) => number.to_string(),
                _ => {
                    return Err(Error::bad_request(format!(
                        "invalid option {name:?}: send a string"
                    )));
                }
            };
            options.insert(name.clone(), text);
        }
    }
    if let Some(legacy) = options.remove("path") {
        options.entry("file_path".into()).or_insert(legacy);
    }
    check_file_options(&options)?;
    Ok(options)
}

fn check_file_options(options: &BTreeMap<String, String>) -> Result<(), Error> {
    let file_path = options.get("file_path").map_or("", String::as_str);
    if file_path.is_empty() {
        return Err(Error::bad_request(
            "missing file_path: set options.file_path to the absolute path of the audit log",
        ));
    }
    if !file_path.starts_with('/') {
        return Err(Error::bad_request(format!(
            "invalid file_path {file_path:?}: use an absolute path"
        )));
    }
    let flag = |name: &str| -> Result<Option<bool>, Error> {
        match options.get(name).map(String::as_str) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(Error::bad_request(format!(
                "invalid {name} {other:?}: use \"true\" or \"false\""
            ))),
        }
    };
    if flag("log_raw")? == Some(true) {
        return Err(Error::bad_request(
            "invalid log_raw \"true\": this server always hashes sensitive values in audit entries",
        ));
    }
    flag("hmac_accessor")?;
    if let Some(format) = options.get("format").filter(|format| *format != "json") {
        return Err(Error::bad_request(format!(
            "invalid format {format:?}: only \"json\" is written"
        )));
    }
    if let Some(mode) = options.get("mode") {
        let valid = u32::from_str_radix(mode, 8).is_ok_and(|bits| bits <= 0o777);
        if !valid {
            return Err(Error::bad_request(format!(
                "invalid mode {mode:?}: use octal permission bits such as \"0600\""
            )));
        }
    }
    Ok(())
}

fn disable(
    core: &Core,
    ctx: &mut Ctx<'_>,
    raw_path: &str,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let path = device_path(raw_path)?;
    let devices = audit::list_devices(core, txn)?;
    let Some(local) = devices
        .iter()
        .find(|device| device.path == path)
        .map(|device| device.local)
    else {
        // Disabling a device that is not enabled succeeds, as in Vault.
        return Ok(Response::NoContent);
    };
    let half: Vec<AuditDevice> = devices
        .into_iter()
        .filter(|device| device.local == local && device.path != path)
        .collect();
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    audit::save_devices(&mut view, local, half)?;
    Ok(Response::NoContent)
}

fn hash(
    core: &Core,
    request: &Request,
    raw_path: &str,
    txn: &dyn Transaction,
) -> Result<Response, Error> {
    let path = device_path(raw_path)?;
    let device = audit::find(core, txn, &path)?.ok_or_else(|| {
        Error::bad_request(format!(
            "unknown audit backend {path:?}: enable a device there first"
        ))
    })?;
    let input = params::string(&request.data, "input")?.ok_or_else(|| {
        Error::bad_request("missing input: send the value to hash in the input field")
    })?;
    let mut data = Map::new();
    data.insert("hash".into(), json!(device.hmac_key.hash(&input)));
    Ok(Response::data(data))
}
