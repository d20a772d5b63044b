//! A raw HTTP client for the tests that check status codes and bodies byte for byte.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

/// Sends requests to `<address>/v1/...` with `X-Vault-Token` when a token is set.
pub struct Api {
    http: Client,
    address: String,
    token: String,
}

/// A status code and the JSON body (`Null` when the body was empty or not JSON).
#[derive(Debug)]
pub struct ApiResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The body parsed as JSON, or `Null`.
    pub body: Value,
    /// The body as received.
    pub text: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `X-Vault-Index` header, if any.
    pub index: Option<String>,
}

impl Api {
    /// Builds a client for `address`, trusting `ca_certificate` when given.
    pub fn new(address: &str, token: &str, ca_certificate: Option<&Path>) -> anyhow::Result<Api> {
        crate::install_crypto_provider();
        let mut builder = Client::builder().timeout(Duration::from_secs(30));
        if let Some(path) = ca_certificate {
            let pem = std::fs::read(path)?;
            builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        Ok(Api {
            http: builder.build()?,
            address: address.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Returns a client for the same server with another token.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            http: self.http.clone(),
            address: self.address.clone(),
            token: token.to_owned(),
        }
    }

    /// Sends `method v1/<path>` with extra headers and an optional JSON body.
    pub fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<ApiResponse> {
        let mut request = self.request(method, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request)
    }

    /// Sends `GET v1/<path>`.
    pub fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(self.request(Method::GET, path))
    }

    /// Sends `GET v1/<path>?list=true`.
    pub fn list(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(self.request(Method::GET, &format!("{path}?list=true")))
    }

    /// Sends `PUT v1/<path>` with a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<ApiResponse> {
        self.send(self.request(Method::PUT, path).json(body))
    }

    /// Sends `POST v1/<path>` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<ApiResponse> {
        self.send(self.request(Method::POST, path).json(body))
    }

    /// Sends `DELETE v1/<path>`.
    pub fn delete(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(self.request(Method::DELETE, path))
    }

    /// Sends `POST v1/<path>` with `X-Vault-Wrap-TTL: <ttl>`, so the response comes back wrapped.
    pub fn post_wrapped(&self, path: &str, body: &Value, ttl: &str) -> anyhow::Result<ApiResponse> {
        let request = self
            .request(Method::POST, path)
            .header("X-Vault-Wrap-TTL", ttl);
        self.send(request.json(body))
    }

    /// Sends a request with a raw body and content type, for malformed-input tests.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<ApiResponse> {
        let request = self.request(method, path);
        self.send(request.header("Content-Type", content_type).body(body))
    }

    /// Mounts a KV engine of `version` ("1" or "2") at `path` and fails unless it returns 204 or 200.
    pub fn enable_kv(&self, path: &str, version: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"type": "kv", "options": {"version": version}});
        let response = self.post(&format!("sys/mounts/{path}"), &body)?;
        if response.status != 204 && response.status != 200 {
            bail!(
                "mounting kv v{version} at {path} failed: {} {}",
                response.status,
                response.text
            );
        }
        Ok(())
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let request = self
            .http
            .request(method, url)
            .header("X-Vault-Request", "true");
        if self.token.is_empty() {
            request
        } else {
            request.header("X-Vault-Token", &self.token)
        }
    }

    fn send(&self, request: RequestBuilder) -> anyhow::Result<ApiResponse> {
        let response = request.send().context("the request got no response")?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let index = response
            .headers()
            .get("x-vault-index")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(ApiResponse {
            status,
            body,
            text,
            content_type,
            index,
        })
    }
}

/// Returns the string at the JSON `pointer` (such as `/auth/client_token`) in `body`, or an
/// error that shows the body.
pub fn string_at(body: &Value, pointer: &str) -> anyhow::Result<String> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no string at {pointer} in {body}"))
}

impl ApiResponse {
    /// Fails unless the status is `expected`, showing the body.
    pub fn expect_status(&self, expected: u16) -> anyhow::Result<()> {
        if self.status != expected {
            bail!(
                "expected status {expected}, got {}: {}",
                self.status,
                self.text
            );
        }
        Ok(())
    }

    /// Returns the body of a 200 or 204 response, and fails with the status and body otherwise.
    pub fn success(self) -> anyhow::Result<Value> {
        if self.status != 200 && self.status != 204 {
            bail!("expected success, got {}: {}", self.status, self.text);
        }
        Ok(self.body)
    }

    /// Returns the `errors` list of an error response, or an empty list when there is none.
    pub fn errors(&self) -> Vec<String> {
        let errors = self.body["errors"].as_array().cloned().unwrap_or_default();
        errors
            .iter()
            .map(|error| error.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}
