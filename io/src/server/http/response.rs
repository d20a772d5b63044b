//! Rendering a logical result as Vault's HTTP response: the envelope, raw bodies, 204 and the
//! `{"errors": [...]}` format.

use bytes::Bytes;
use coffer_core::error::Error;
use coffer_core::request::{Logical, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

/// `sys/` routes whose `data` keys Vault also copies to the top level of the envelope. An entry
/// ending in `/` matches every path below it; the others match exactly.
const TOP_LEVEL_DATA_ROUTES: &[&str] = &[
    "sys/audit",
    "sys/audit/",
    "sys/audit-hash/",
    "sys/auth",
    "sys/auth/",
    "sys/config/cors",
    "sys/config/auditing/request-headers",
    "sys/config/auditing/request-headers/",
    "sys/capabilities",
    "sys/capabilities-accessor",
    "sys/capabilities-self",
    "sys/ha-status",
    "sys/key-status",
    "sys/mounts",
    "sys/mounts/",
    "sys/policy",
    "sys/policy/",
    "sys/rekey/backup",
    "sys/rekey/recovery-key-backup",
    "sys/remount",
    "sys/rotate",
    "sys/wrapping/wrap",
];

/// Renders the result of the request at logical `path` as an HTTP response.
pub fn render_result(
    request_id: &str,
    path: &str,
    result: &Result<Response, Error>,
) -> http::Response<Bytes> {
    match result {
        Ok(response) => render_response(request_id, path, response),
        Err(error) => render_error(error),
    }
}

/// Renders a successful response.
pub fn render_response(request_id: &str, path: &str, response: &Response) -> http::Response<Bytes> {
    match response {
        Response::NoContent => empty(StatusCode::NO_CONTENT),
        Response::Raw { status, body } => json_response(*status, body),
        Response::Logical(logical) => {
            let mut envelope = envelope(request_id, logical);
            if injects_data(path) {
                inject_data(&mut envelope, logical);
            }
            json_response(logical.status, &Value::Object(envelope))
        }
    }
}

/// Renders an error as `{"errors": [...]}` with its status.
pub fn render_error(error: &Error) -> http::Response<Bytes> {
    let messages = match error {
        Error::Api { messages, .. } => messages.clone(),
        Error::Storage(storage) => vec![storage.to_string()],
    };
    render_errors(error.status(), &messages)
}

/// Renders `{"errors": messages}` with `status`.
pub fn render_errors(status: u16, messages: &[String]) -> http::Response<Bytes> {
    json_response(status, &json!({ "errors": messages }))
}

fn envelope(request_id: &str, logical: &Logical) -> Map<String, Value> {
    let warnings = if logical.warnings.is_empty() {
        Value::Null
    } else {
        json!(logical.warnings)
    };
    let mut envelope = Map::new();
    envelope.insert("request_id".into(), json!(request_id));
    envelope.insert("lease_id".into(), json!(logical.lease_id));
    envelope.insert("renewable".into(), json!(logical.renewable));
    envelope.insert("lease_duration".into(), json!(logical.lease_duration));
    envelope.insert("data".into(), json!(logical.data));
    envelope.insert("wrap_info".into(), json!(logical.wrap_info));
    envelope.insert("warnings".into(), warnings);
    envelope.insert("auth".into(), json!(logical.auth));
    if !logical.mount_type.is_empty() {
        envelope.insert("mount_type".into(), json!(logical.mount_type));
    }
    envelope
}

fn injects_data(path: &str) -> bool {
    TOP_LEVEL_DATA_ROUTES.iter().any(|route| {
        if route.ends_with('/') {
            path.starts_with(route)
        } else {
            path == *route
        }
    })
}

/// Copies `data` keys to the top level. Envelope fields keep their values when a key collides,
/// because clients parse those fields strictly.
fn inject_data(envelope: &mut Map<String, Value>, logical: &Logical) {
    let Some(data) = &logical.data else {
        return;
    };
    for (key, value) in data {
        if !envelope.contains_key(key) {
            envelope.insert(key.clone(), value.clone());
        }
    }
}

fn json_response(status: u16, body: &Value) -> http::Response<Bytes> {
    // A `Logical` built from `Default` has status 0, which means the usual 200.
    let status = match status {
        0 => StatusCode::OK,
        other => StatusCode::from_u16(other).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    };
    // Serialising a `Value` cannot fail: its map keys are strings.
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::new());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use coffer_core::request::Auth;

    use super::*;

    fn body(response: &http::Response<Bytes>) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    fn mounts_data() -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("secret/".into(), json!({"type": "kv"}));
        data
    }

    #[test]
    fn envelope_has_every_field() {
        let response = Response::data(mounts_data());
        let rendered = render_response("id-1", "secret/foo", &response);
        assert_eq!(rendered.status(), 200);
        assert_eq!(rendered.headers()[header::CONTENT_TYPE], "application/json");
        let body = body(&rendered);
        assert_eq!(body["request_id"], json!("id-1"));
        assert_eq!(body["lease_id"], json!(""));
        assert_eq!(body["renewable"], json!(false));
        assert_eq!(body["lease_duration"], json!(0));
        assert_eq!(body["data"]["secret/"]["type"], json!("kv"));
        for null_field in ["wrap_info", "warnings", "auth"] {
            assert_eq!(body.get(null_field), Some(&Value::Null), "{null_field}");
        }
        assert!(body.get("mount_type").is_none());
    }

    #[test]
    fn envelope_carries_auth_warnings_and_mount_type() {
        let logical = Logical {
            status: 200,
            auth: Some(Auth {
                accessor: "acc".into(),
                ..Auth::default()
            }),
            warnings: vec!["careful".into()],
            mount_type: "kv".into(),
            ..Logical::default()
        };
        let body = body(&render_response(
            "id",
            "auth/token/create",
            &Response::logical(logical),
        ));
        assert_eq!(body["auth"]["accessor"], json!("acc"));
        assert_eq!(body["auth"]["entity_id"], json!(""));
        assert_eq!(body["warnings"], json!(["careful"]));
        assert_eq!(body["mount_type"], json!("kv"));
        assert_eq!(body["data"], Value::Null);
    }

    #[test]
    fn no_content_is_204_without_body() {
        let rendered = render_response("id", "sys/mounts/x", &Response::NoContent);
        assert_eq!(rendered.status(), 204);
        assert!(rendered.body().is_empty());
    }

    #[test]
    fn sys_mounts_data_is_injected_at_top_level() {
        for path in ["sys/mounts", "sys/auth", "sys/policy/", "sys/mounts/secret"] {
            let body = body(&render_response("id", path, &Response::data(mounts_data())));
            assert_eq!(body["secret/"]["type"], json!("kv"), "{path}");
            assert_eq!(body["data"]["secret/"]["type"], json!("kv"), "{path}");
        }
    }

    #[test]
    fn other_paths_get_no_injection() {
        for path in ["secret/foo", "sys/mountsx", "sys/health", "sys/audit-hash"] {
            let body = body(&render_response("id", path, &Response::data(mounts_data())));
            assert!(body.get("secret/").is_none(), "{path}");
        }
    }

    #[test]
    fn injection_keeps_envelope_fields() {
        let mut data = Map::new();
        data.insert("request_id".into(), json!("from data"));
        let body = body(&render_response(
            "real",
            "sys/mounts",
            &Response::data(data),
        ));
        assert_eq!(body["request_id"], json!("real"));
    }

    #[test]
    fn unset_status_renders_200() {
        let logical = Logical::default();
        let rendered = render_response("id", "secret/foo", &Response::logical(logical));
        assert_eq!(rendered.status(), 200);
    }

    #[test]
    fn raw_response_has_no_envelope() {
        let raw = Response::Raw {
            status: 501,
            body: json!({"initialized": false}),
        };
        let rendered = render_response("id", "sys/health", &raw);
        assert_eq!(rendered.status(), 501);
        assert_eq!(body(&rendered), json!({"initialized": false}));
    }

    #[test]
    fn error_renders_errors_list() {
        let rendered = render_error(&Error::permission_denied());
        assert_eq!(rendered.status(), 403);
        assert_eq!(rendered.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(&rendered), json!({"errors": ["permission denied"]}));
        let missing = render_error(&Error::not_found());
        assert_eq!(body(&missing), json!({"errors": []}));
    }
}
