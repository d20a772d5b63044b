//! The HTTP client: address, token and TLS settings from the environment, and one request.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client as HttpClient, RequestBuilder};
use serde_json::Value;

use super::error::{CliError, error_chain};

/// The address the Vault CLI uses when VAULT_ADDR is not set.
const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// How long one request may take, as the Vault CLI's default VAULT_CLIENT_TIMEOUT.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for one server, sending `X-Vault-Request` and the token on every request.
pub(crate) struct Client {
    http: HttpClient,
    address: String,
    token: Option<String>,
}

/// One response of the server: its status and its JSON body, if it had one.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
}

impl Client {
    /// Builds a client from VAULT_ADDR (or `address`), VAULT_TOKEN (else the token file),
    /// VAULT_CACERT and VAULT_SKIP_VERIFY.
    pub(crate) fn from_env(address: Option<&str>) -> Result<Client, CliError> {
        let address = match address {
            Some(address) => address.to_owned(),
            None => std::env::var("VAULT_ADDR").unwrap_or_else(|_| DEFAULT_ADDRESS.to_owned()),
        };
        let http = build_http_client()?;
        let token = token_from_env()?;
        let address = address.trim_end_matches('/').to_owned();
        Ok(Client {
            http,
            address,
            token,
        })
    }

    /// Sends `GET v1/<path>`.
    pub(crate) fn read(&self, path: &str) -> Result<ApiResponse, CliError> {
        self.send(Method::GET, path, None)
    }

    /// Sends a list request as the Go client does: `GET v1/<path>?list=true`.
    pub(crate) fn list(&self, path: &str) -> Result<ApiResponse, CliError> {
        let path = format!("{}?list=true", path.trim_end_matches('/'));
        self.send(Method::GET, &path, None)
    }

    /// Sends `PUT v1/<path>` with a JSON body.
    pub(crate) fn write(&self, path: &str, body: &Value) -> Result<ApiResponse, CliError> {
        self.send(Method::PUT, path, Some(body))
    }

    /// Sends `POST v1/<path>` with a JSON body.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<ApiResponse, CliError> {
        self.send(Method::POST, path, Some(body))
    }

    /// Sends `DELETE v1/<path>`.
    pub(crate) fn delete(&self, path: &str) -> Result<ApiResponse, CliError> {
        self.send(Method::DELETE, path, None)
    }

    /// Sends one request and returns the response. A status of 400 or more becomes
    /// [`CliError::Api`], except 404, which the caller interprets.
    pub(crate) fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, CliError> {
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let request = self.request(method.clone(), &url, body);
        let response = request.send().map_err(|error| CliError::Transport {
            url: url.clone(),
            detail: transport_detail(&url, &error),
        })?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|error| CliError::Transport {
            url: url.clone(),
            detail: error_chain(&error),
        })?;
        let parsed = parse_response(status, &text);
        // A 404 with messages (no mount serves the path, say) is an error to show. Only a bare
        // 404 means nothing is stored at the path.
        let explained = status == 404 && has_errors(&parsed);
        if (status >= 400 && status != 404) || explained {
            return Err(api_error(method.as_str(), url, &parsed, &text));
        }
        Ok(parsed)
    }

    fn request(&self, method: Method, url: &str, body: Option<&Value>) -> RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }
}

impl ApiResponse {
    /// Returns the response's `data` object, or `Null` when there is none.
    pub(crate) fn data(&self) -> &Value {
        self.body
            .as_ref()
            .and_then(|body| body.get("data"))
            .unwrap_or(&Value::Null)
    }

    /// Returns the body, or `Null` for an empty (204) response.
    pub(crate) fn body(&self) -> &Value {
        self.body.as_ref().unwrap_or(&Value::Null)
    }
}

/// Converts a 404 into [`CliError::NotFound`] for `path`.
pub(crate) fn found(response: ApiResponse, path: &str) -> Result<ApiResponse, CliError> {
    if response.status == 404 {
        Err(CliError::NotFound(path.to_owned()))
    } else {
        Ok(response)
    }
}

fn parse_response(status: u16, text: &str) -> ApiResponse {
    let body = if text.trim().is_empty() {
        None
    } else {
        serde_json::from_str(text).ok()
    };
    ApiResponse { status, body }
}

fn api_error(method: &str, url: String, parsed: &ApiResponse, text: &str) -> CliError {
    let listed = parsed
        .body()
        .get("errors")
        .and_then(Value::as_array)
        .map(|errors| errors.iter().map(value_text).collect::<Vec<_>>());
    let errors = listed.unwrap_or_else(|| vec![text.trim().to_owned()]);
    CliError::Api {
        method: method.to_owned(),
        url,
        status: parsed.status,
        errors,
    }
}

/// Returns whether a response lists at least one error message.
fn has_errors(parsed: &ApiResponse) -> bool {
    parsed
        .body()
        .get("errors")
        .and_then(Value::as_array)
        .is_some_and(|errors| !errors.is_empty())
}

/// Describes a failed request, with a hint when an `https` address reached a plain HTTP server,
/// which TLS reports as a corrupt message.
fn transport_detail(url: &str, error: &reqwest::Error) -> String {
    let detail = error_chain(error);
    if url.starts_with("https://") && detail.contains("InvalidContentType") {
        return format!(
            "{detail}; the server at this address may speak plain HTTP: set VAULT_ADDR to an \
             http:// address"
        );
    }
    detail
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn build_http_client() -> Result<HttpClient, CliError> {
    install_crypto_provider();
    let mut builder = HttpClient::builder().timeout(REQUEST_TIMEOUT);
    if let Ok(path) = std::env::var("VAULT_CACERT") {
        let pem = std::fs::read(&path).map_err(|error| {
            CliError::Local(format!("failed to read VAULT_CACERT file {path}: {error}"))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            CliError::Local(format!("invalid PEM in VAULT_CACERT file {path}: {error}"))
        })?;
        builder = builder.tls_certs_merge(certificates);
    }
    if skip_verify() {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|error| CliError::Local(format!("failed to set up the HTTP client: {error}")))
}

/// Installs ring as rustls' process-wide provider, which reqwest's `rustls-no-provider` needs.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads VAULT_SKIP_VERIFY the way Go's `strconv.ParseBool` does; an unset or invalid value
/// keeps verification on.
fn skip_verify() -> bool {
    std::env::var("VAULT_SKIP_VERIFY")
        .map(|value| matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
        .unwrap_or(false)
}

fn token_from_env() -> Result<Option<String>, CliError> {
    if let Ok(token) = std::env::var("VAULT_TOKEN") {
        return Ok(non_empty(token));
    }
    let Some(path) = token_path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(token) => Ok(non_empty(token)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(CliError::Local(format!(
            "failed to read the token file {}: {error}",
            path.display()
        ))),
    }
}

/// Returns VAULT_TOKEN_PATH, else `~/.vault-token`.
fn token_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("VAULT_TOKEN_PATH") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".vault-token"))
}

fn non_empty(token: String) -> Option<String> {
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::{has_errors, parse_response};

    #[test]
    fn bare_not_found_lists_no_errors() {
        assert!(!has_errors(&parse_response(404, r#"{"errors":[]}"#)));
        assert!(!has_errors(&parse_response(404, "")));
    }

    #[test]
    fn explained_not_found_lists_errors() {
        let body = r#"{"errors":["no mount serves the path \"secret/a\""]}"#;
        assert!(has_errors(&parse_response(404, body)));
    }
}
