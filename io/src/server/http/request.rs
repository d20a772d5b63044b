//! Mapping an HTTP request to a logical [`Request`], as Vault's HTTP layer does.

use std::net::SocketAddr;
use std::time::Duration;

use coffer_core::request::{Operation, Request, Secret};
use coffer_core::time::parse_duration;
use http::{HeaderMap, Method};
use serde_json::{Map, Value};

/// Why an HTTP request could not become a logical request: the status and the message.
pub type MapError = (u16, String);

const MERGE_PATCH: &str = "application/merge-patch+json";
const FORM: &str = "application/x-www-form-urlencoded";

/// Maximum number of values (JSON values, or form fields) in one request body. A parsed value
/// costs several times its size in the body, so without this bound a 32 MiB body of small
/// values grows the server by hundreds of MiB before the token is even checked.
pub const MAX_BODY_VALUES: usize = 100_000;

/// Maps one HTTP request to a logical request.
///
/// The path must start with `/v1/`. The request id is left empty; the node fills it in. The
/// function is pure, so the fuzzer calls it directly.
pub fn map_request(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    remote_addr: Option<SocketAddr>,
) -> Result<Request, MapError> {
    let (raw_path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, query),
        None => (path_and_query, ""),
    };
    let path = logical_path(raw_path)?;
    let mut query = parse_query(query);
    let operation = operation(method, &path, &mut query)?;
    let path = normalize_trailing_slash(path, operation);
    let data = match method.as_str() {
        "POST" | "PUT" | "PATCH" => body_data(method, headers, body)?,
        _ => query,
    };
    Ok(Request {
        id: String::new(),
        operation,
        path,
        data,
        token: token(headers)?,
        wrap_ttl: wrap_ttl(headers)?,
        remote_addr: remote_addr.map(|addr| addr.ip()),
        index: header_text(headers, "X-Vault-Index")?.map(str::to_owned),
    })
}

/// Returns the URL path as the request log shows it: decoded and with repeated slashes
/// collapsed as [`map_request`] routes it, then with a token in the path replaced by
/// `<redacted>`. Redacting the raw path instead would miss `auth//token/lookup/<token>` and
/// `auth/token/lookup%2F<token>`, which route to the same endpoint.
pub fn log_path(raw_path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    let collapsed = collapse_slashes(&decoded);
    coffer_core::token::redact_path(&collapsed).into_owned()
}

fn collapse_slashes(path: &str) -> String {
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && collapsed.ends_with('/') {
            continue;
        }
        collapsed.push(c);
    }
    collapsed
}

/// Decodes the URL path, checks the `/v1/` prefix and collapses repeated slashes.
fn logical_path(raw_path: &str) -> Result<String, MapError> {
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| (400, format!("invalid URL path {raw_path:?}: not UTF-8")))?;
    let collapsed = collapse_slashes(&decoded);
    let Some(rest) = collapsed.strip_prefix("/v1/") else {
        return Err((404, String::new()));
    };
    if rest.is_empty() {
        return Err((404, String::new()));
    }
    Ok(rest.to_owned())
}

fn operation(
    method: &Method,
    path: &str,
    query: &mut Map<String, Value>,
) -> Result<Operation, MapError> {
    match method.as_str() {
        "GET" => {
            let list = query
                .remove("list")
                .and_then(|value| value.as_str().map(parse_go_bool))
                .unwrap_or(false);
            Ok(if list {
                Operation::List
            } else {
                Operation::Read
            })
        }
        "HEAD" if path.trim_end_matches('/') == "sys/health" => Ok(Operation::Read),
        "POST" | "PUT" => Ok(Operation::Update),
        "DELETE" => Ok(Operation::Delete),
        "LIST" => Ok(Operation::List),
        "PATCH" => Ok(Operation::Patch),
        _ => Err((405, "unsupported operation".into())),
    }
}

/// Go's `strconv.ParseBool` truth values, which Vault uses for `?list=`.
fn parse_go_bool(text: &str) -> bool {
    matches!(text, "1" | "t" | "T" | "TRUE" | "true" | "True")
}

fn normalize_trailing_slash(path: String, operation: Operation) -> String {
    let trimmed = path.trim_end_matches('/');
    if operation == Operation::List {
        format!("{trimmed}/")
    } else {
        trimmed.to_owned()
    }
}

/// Query parameters as request data: a single value becomes a string, a repeated key a list.
fn parse_query(query: &str) -> Map<String, Value> {
    let mut data = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match data.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                data.insert(key.into_owned(), value);
            }
        }
    }
    data
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let media_type = value.split(';').next().unwrap_or_default();
    Some(media_type.trim().to_ascii_lowercase())
}

fn body_data(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Map<String, Value>, MapError> {
    let content_type = content_type(headers);
    if method == Method::PATCH && content_type.as_deref() != Some(MERGE_PATCH) {
        let sent = content_type.unwrap_or_else(|| "none".into());
        return Err((
            415,
            format!("PATCH requires Content-Type {MERGE_PATCH}, but the request sent {sent}"),
        ));
    }
    if content_type.as_deref() == Some(FORM) && !looks_like_json(body) {
        let fields = body.split(|byte| *byte == b'&').count();
        if fields > MAX_BODY_VALUES {
            return Err(too_many_values("form fields"));
        }
        return Ok(parse_query(&String::from_utf8_lossy(body)));
    }
    json_object(body)
}

/// Reports whether a body declared as a form is JSON after all. `curl -d '{...}'` sends JSON
/// with the form content type, so a body starting with `{` or `[` is read as JSON.
fn looks_like_json(body: &[u8]) -> bool {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace());
    matches!(first, Some(b'{' | b'['))
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, MapError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if json_values_exceed(body, MAX_BODY_VALUES) {
        return Err(too_many_values("JSON values"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| (400, format!("failed to parse JSON input: {error}")))?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err((
            400,
            format!(
                "failed to parse JSON input: the body must be a JSON object, not {}",
                json_kind(&other)
            ),
        )),
    }
}

fn too_many_values(unit: &str) -> MapError {
    (
        400,
        format!(
            "the request body has more than {MAX_BODY_VALUES} {unit}; \
             split the data over several requests or secrets"
        ),
    )
}

/// Reports whether the JSON text `body` contains more than `max` values, counting without
/// building them. Keys are not counted. In valid JSON every value but the root follows a comma
/// or opens a non-empty array or object, so the count is exact for valid JSON; for invalid JSON
/// it may be anything, and the parser rejects the text afterwards.
fn json_values_exceed(body: &[u8], max: usize) -> bool {
    let mut count: usize = 1;
    let mut in_string = false;
    let mut escaped = false;
    for (index, byte) in body.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b',' => count += 1,
            b'[' | b'{' => {
                let next = body[index + 1..]
                    .iter()
                    .find(|byte| !byte.is_ascii_whitespace());
                if !matches!(next, Some(b']' | b'}') | None) {
                    count += 1;
                }
            }
            _ => {}
        }
        if count > max {
            return true;
        }
    }
    false
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, MapError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()))
            .map_err(|_| (400, format!("invalid {name} header: not visible ASCII"))),
    }
}

fn token(headers: &HeaderMap) -> Result<Option<Secret>, MapError> {
    if let Some(token) = header_text(headers, "x-vault-token")? {
        return Ok((!token.is_empty()).then(|| Secret::new(token)));
    }
    let Some(authorization) = header_text(headers, "authorization")? else {
        return Ok(None);
    };
    let bearer = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    Ok(bearer.filter(|token| !token.is_empty()).map(Secret::new))
}

fn wrap_ttl(headers: &HeaderMap) -> Result<Option<Duration>, MapError> {
    let Some(text) = header_text(headers, "x-vault-wrap-ttl")? else {
        return Ok(None);
    };
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('-') {
        return Err((
            400,
            format!("invalid X-Vault-Wrap-TTL {text:?}: the TTL must not be negative"),
        ));
    }
    let ttl = parse_duration(text)
        .map_err(|error| (400, format!("invalid X-Vault-Wrap-TTL {text:?}: {error}")))?;
    Ok((!ttl.is_zero()).then_some(ttl))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn map(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Request, MapError> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map_request(&method, uri, &map, body.as_bytes(), None)
    }

    fn ok(method: &str, uri: &str) -> Request {
        map(method, uri, &[], "").unwrap()
    }

    #[test]
    fn list_forms_share_one_path() {
        let cases = [
            ("LIST", "/v1/secret/foo"),
            ("LIST", "/v1/secret/foo/"),
            ("GET", "/v1/secret/foo?list=true"),
            ("GET", "/v1/secret/foo/?list=1"),
            ("GET", "/v1/secret/foo?list=t"),
            ("GET", "/v1/secret/foo?list=T"),
            ("GET", "/v1/secret/foo?list=TRUE"),
            ("GET", "/v1/secret/foo?list=True"),
        ];
        for (method, uri) in cases {
            let request = ok(method, uri);
            assert_eq!(request.operation, Operation::List, "{method} {uri}");
            assert_eq!(request.path, "secret/foo/", "{method} {uri}");
            assert!(!request.data.contains_key("list"), "{method} {uri}");
        }
    }

    #[test]
    fn list_false_values_read() {
        for uri in ["/v1/secret/foo?list=false", "/v1/secret/foo?list=yes"] {
            let request = ok("GET", uri);
            assert_eq!(request.operation, Operation::Read, "{uri}");
            assert_eq!(request.path, "secret/foo", "{uri}");
        }
    }

    #[test]
    fn verbs_map_to_operations() {
        assert_eq!(ok("GET", "/v1/a/b").operation, Operation::Read);
        assert_eq!(ok("POST", "/v1/a/b").operation, Operation::Update);
        assert_eq!(ok("PUT", "/v1/a/b").operation, Operation::Update);
        assert_eq!(ok("DELETE", "/v1/a/b").operation, Operation::Delete);
        assert_eq!(ok("HEAD", "/v1/sys/health").operation, Operation::Read);
        assert_eq!(map("HEAD", "/v1/secret/a", &[], "").unwrap_err().0, 405);
        assert_eq!(map("OPTIONS", "/v1/secret/a", &[], "").unwrap_err().0, 405);
    }

    #[test]
    fn path_collapses_slashes_and_trims() {
        assert_eq!(ok("GET", "/v1//secret//foo/").path, "secret/foo");
        assert_eq!(ok("GET", "//v1/secret/foo").path, "secret/foo");
        assert_eq!(ok("GET", "/v1/secret/a%20b").path, "secret/a b");
    }

    #[test]
    fn path_without_v1_is_404() {
        for uri in ["/secret/foo", "/v2/secret", "/v1", "/v1/", "/"] {
            assert_eq!(map("GET", uri, &[], "").unwrap_err().0, 404, "{uri}");
        }
    }

    #[test]
    fn query_becomes_read_data() {
        let request = ok("GET", "/v1/secret/data/foo?version=2&tag=a&tag=b");
        assert_eq!(request.data["version"], json!("2"));
        assert_eq!(request.data["tag"], json!(["a", "b"]));
    }

    #[test]
    fn token_headers_are_read() {
        let vault = map("GET", "/v1/a", &[("X-Vault-Token", "s.1")], "").unwrap();
        assert_eq!(vault.token.unwrap().expose(), "s.1");
        let bearer = map("GET", "/v1/a", &[("Authorization", "Bearer s.2")], "").unwrap();
        assert_eq!(bearer.token.unwrap().expose(), "s.2");
        let basic = map("GET", "/v1/a", &[("Authorization", "Basic eA==")], "").unwrap();
        assert!(basic.token.is_none());
        assert!(ok("GET", "/v1/a").token.is_none());
    }

    #[test]
    fn json_body_becomes_data() {
        let request = map("POST", "/v1/secret/foo", &[], r#"{"a": 1}"#).unwrap();
        assert_eq!(request.data["a"], json!(1));
        let empty = map("PUT", "/v1/secret/foo", &[], "").unwrap();
        assert!(empty.data.is_empty());
    }

    #[test]
    fn malformed_json_is_400() {
        let (status, message) = map("POST", "/v1/secret/foo", &[], "{nope").unwrap_err();
        assert_eq!(status, 400);
        assert!(
            message.starts_with("failed to parse JSON input: "),
            "{message}"
        );
    }

    #[test]
    fn non_object_json_is_400() {
        let (status, message) = map("POST", "/v1/secret/foo", &[], "[1, 2]").unwrap_err();
        assert_eq!(status, 400);
        assert!(
            message.contains("must be a JSON object, not an array"),
            "{message}"
        );
    }

    #[test]
    fn json_value_count_is_exact() {
        let cases = [
            ("{}", 1),
            (r#"{"a": 1}"#, 2),
            (r#"{"a": [1, 2, {"b": "x,[{"}], "c": []}"#, 7),
            (r#"[[], [ ], {}, "\",", "\\"]"#, 6),
        ];
        for (text, values) in cases {
            let body = text.as_bytes();
            assert!(!json_values_exceed(body, values), "{text} has {values}");
            assert!(json_values_exceed(body, values - 1), "{text} has {values}");
        }
    }

    #[test]
    fn json_with_too_many_values_is_400() {
        let numbers = vec!["0"; MAX_BODY_VALUES].join(",");
        let body = format!(r#"{{"a":[{numbers}]}}"#);
        let (status, message) = map("POST", "/v1/secret/foo", &[], &body).unwrap_err();
        assert_eq!(status, 400);
        assert!(
            message.contains(&format!("more than {MAX_BODY_VALUES} JSON values")),
            "{message}"
        );

        let fewer = vec!["0"; MAX_BODY_VALUES - 2].join(",");
        let body = format!(r#"{{"a":[{fewer}]}}"#);
        let request = map("POST", "/v1/secret/foo", &[], &body).unwrap();
        assert_eq!(
            request.data["a"].as_array().unwrap().len(),
            MAX_BODY_VALUES - 2
        );
    }

    #[test]
    fn form_with_too_many_fields_is_400() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let body = vec!["a="; MAX_BODY_VALUES + 1].join("&");
        let (status, message) = map("POST", "/v1/secret/foo", &headers, &body).unwrap_err();
        assert_eq!(status, 400);
        assert!(
            message.contains(&format!("more than {MAX_BODY_VALUES} form fields")),
            "{message}"
        );
    }

    #[test]
    fn form_body_is_accepted() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let request = map("POST", "/v1/secret/foo", &headers, "a=1&b=two+words").unwrap();
        assert_eq!(request.data["a"], json!("1"));
        assert_eq!(request.data["b"], json!("two words"));
    }

    #[test]
    fn json_body_with_form_type_is_json() {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        let request = map("POST", "/v1/secret/foo", &headers, r#" {"a": "b"}"#).unwrap();
        assert_eq!(request.data["a"], json!("b"));
        let (status, _) = map("POST", "/v1/secret/foo", &headers, "[1]").unwrap_err();
        assert_eq!(status, 400);
    }

    #[test]
    fn patch_needs_merge_patch_type() {
        let (status, message) = map("PATCH", "/v1/secret/data/foo", &[], "{}").unwrap_err();
        assert_eq!(status, 415);
        assert!(
            message.contains("application/merge-patch+json"),
            "{message}"
        );
        let json = [("Content-Type", "application/json")];
        assert_eq!(
            map("PATCH", "/v1/secret/data/foo", &json, "{}")
                .unwrap_err()
                .0,
            415
        );
        let patch = [(
            "Content-Type",
            "application/merge-patch+json; charset=utf-8",
        )];
        let request = map("PATCH", "/v1/secret/data/foo", &patch, r#"{"data":{}}"#).unwrap();
        assert_eq!(request.operation, Operation::Patch);
    }

    #[test]
    fn wrap_ttl_accepts_seconds_and_durations() {
        let cases = [("60", 60), ("15s", 15), ("20m", 1200), ("25h", 90_000)];
        for (text, seconds) in cases {
            let request = map("GET", "/v1/a", &[("X-Vault-Wrap-TTL", text)], "").unwrap();
            assert_eq!(
                request.wrap_ttl,
                Some(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        let zero = map("GET", "/v1/a", &[("X-Vault-Wrap-TTL", "0")], "").unwrap();
        assert_eq!(zero.wrap_ttl, None);
    }

    #[test]
    fn wrap_ttl_rejects_negative_and_garbage() {
        for text in ["-5", "-1s", "soon", "5x"] {
            let (status, message) =
                map("GET", "/v1/a", &[("X-Vault-Wrap-TTL", text)], "").unwrap_err();
            assert_eq!(status, 400, "{text}");
            assert!(message.contains("X-Vault-Wrap-TTL"), "{message}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn map_request_never_panics(
            method in "(GET|PUT|POST|PATCH|LIST|DELETE|HEAD|[A-Z]{1,7})",
            path in "/(v1/)?[ -~]{0,40}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            token in "[ -~]{0,12}",
            wrap in "[ -~]{0,8}",
            content_type in "(application/json|application/merge-patch\\+json|application/x-www-form-urlencoded|[ -~]{0,12})",
        ) {
            let Ok(method) = Method::from_bytes(method.as_bytes()) else {
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("x-vault-token", &token),
                ("x-vault-wrap-ttl", &wrap),
                ("content-type", &content_type),
            ] {
                if let Ok(value) = http::HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
            if let Ok(request) = map_request(&method, &path, &headers, &body, None) {
                prop_assert!(!request.path.contains("//"));
                prop_assert!(!request.path.starts_with('/'));
                prop_assert_eq!(request.path.ends_with('/'), request.operation == Operation::List);
            }
        }
    }
}
