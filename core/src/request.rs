//! The logical request and response types that the HTTP layer maps to and from JSON.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The kind of a request, as Vault's ACLs see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `GET`.
    Read,
    /// `POST` or `PUT`. The ACL check turns it into `create` or `update` by whether the target
    /// exists.
    Update,
    /// `DELETE`.
    Delete,
    /// `LIST`, or `GET` with `?list=true`.
    List,
    /// `PATCH` with `application/merge-patch+json`.
    Patch,
}

/// A secret string, such as a client token. `Debug` prints only the type name, and the bytes
/// are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret value. Callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One logical request: an operation on a path with its data, after HTTP decoding.
#[derive(Clone, Debug)]
pub struct Request {
    /// The request id returned in the envelope's `request_id`.
    pub id: String,
    /// The operation.
    pub operation: Operation,
    /// The logical path without `/v1/` and without a leading slash, for example `secret/data/foo`.
    pub path: String,
    /// The JSON body of a write, or the query parameters of a read.
    pub data: Map<String, Value>,
    /// The client token from `X-Vault-Token` or `Authorization: Bearer`.
    pub token: Option<Secret>,
    /// The TTL from `X-Vault-Wrap-TTL`, when the response must be wrapped.
    pub wrap_ttl: Option<Duration>,
    /// The client's address, for CIDR bindings and audit.
    pub remote_addr: Option<IpAddr>,
    /// The `X-Vault-Index` header as sent, which names the state the request must see.
    pub index: Option<String>,
}

impl Request {
    /// A request with no data, token or wrapping; tests and internal callers fill in the rest.
    pub fn new(operation: Operation, path: impl Into<String>) -> Request {
        Request {
            id: String::new(),
            operation,
            path: path.into(),
            data: Map::new(),
            token: None,
            wrap_ttl: None,
            remote_addr: None,
            index: None,
        }
    }

    /// Sets the body or query data.
    pub fn with_data(mut self, data: Value) -> Request {
        if let Value::Object(map) = data {
            self.data = map;
        }
        self
    }

    /// Sets the client token.
    pub fn with_token(mut self, token: impl Into<String>) -> Request {
        self.token = Some(Secret::new(token));
        self
    }
}

/// The sender of a request, once its token has been checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// The token's accessor.
    pub accessor: String,
    /// The salted hash of the token, which names its cubbyhole.
    pub token_hash: String,
    /// The token's policies, sorted; `root` grants everything.
    pub policies: Vec<String>,
    /// The display name recorded at creation.
    pub display_name: String,
    /// The path the token was created on, such as `auth/token/create`.
    pub token_path: String,
}

impl Caller {
    /// Whether the caller holds the `root` policy.
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|policy| policy == "root")
    }
}

/// Authentication data in a response: the token a login or token creation issued.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Auth {
    /// The new token. It appears in the response body and nowhere else.
    #[serde(serialize_with = "serialize_secret")]
    pub client_token: Secret,
    /// Its accessor.
    pub accessor: String,
    /// Every policy the token has.
    pub policies: Vec<String>,
    /// The policies attached to the token itself.
    pub token_policies: Vec<String>,
    /// Metadata such as `{"username": "alice"}`, or `null`.
    pub metadata: Option<Map<String, Value>>,
    /// Seconds until the token expires; 0 for none.
    pub lease_duration: u64,
    /// Whether the token can be renewed.
    pub renewable: bool,
    /// Always `""`: Coffer has no identity entities.
    pub entity_id: String,
    /// `service` or `batch`.
    pub token_type: String,
    /// Whether the token has no parent.
    pub orphan: bool,
    /// Remaining uses; 0 for unlimited.
    pub num_uses: u64,
    /// Always `null`.
    pub mfa_requirement: Option<Value>,
}

impl Default for Secret {
    fn default() -> Secret {
        Secret::new(String::new())
    }
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Secret,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

/// The `wrap_info` object of a wrapped response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WrapInfo {
    /// The wrapping token.
    #[serde(serialize_with = "serialize_secret")]
    pub token: Secret,
    /// The wrapping token's accessor.
    pub accessor: String,
    /// Seconds the wrapping token lives.
    pub ttl: u64,
    /// RFC 3339 creation time.
    pub creation_time: String,
    /// The path whose response was wrapped.
    pub creation_path: String,
    /// The accessor of a token inside the wrapped response, `""` when there is none.
    pub wrapped_accessor: String,
}

/// A response in Vault's envelope.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logical {
    /// HTTP status: 200 unless a handler needs another, such as KV v2's 404 for a deleted
    /// version that still carries its metadata.
    pub status: u16,
    /// The `data` object, or `null`.
    pub data: Option<Map<String, Value>>,
    /// The `auth` object, or `null`.
    pub auth: Option<Auth>,
    /// The `lease_id`, or empty.
    pub lease_id: String,
    /// Seconds in `lease_duration`.
    pub lease_duration: u64,
    /// `renewable`.
    pub renewable: bool,
    /// `warnings`, sent as `null` when empty.
    pub warnings: Vec<String>,
    /// `wrap_info`, or `null`.
    pub wrap_info: Option<WrapInfo>,
    /// `mount_type`, or omitted when empty.
    pub mount_type: String,
}

impl Logical {
    /// A 200 response with `data`.
    pub fn with_data(data: Map<String, Value>) -> Logical {
        Logical {
            status: 200,
            data: Some(data),
            ..Logical::default()
        }
    }
}

/// The outcome of a successful request.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// A Vault envelope.
    Logical(Box<Logical>),
    /// A body with no envelope, as `sys/init`, `sys/seal-status` and `sys/health` return.
    Raw {
        /// HTTP status.
        status: u16,
        /// The JSON body.
        body: Value,
    },
    /// 204 with no body.
    NoContent,
}

impl Response {
    /// A 200 envelope with `data`.
    pub fn data(data: Map<String, Value>) -> Response {
        Response::Logical(Box::new(Logical::with_data(data)))
    }

    /// A 200 envelope from a JSON value that must be an object.
    pub fn data_value(data: Value) -> Response {
        match data {
            Value::Object(map) => Response::data(map),
            other => {
                let mut map = Map::new();
                map.insert("value".into(), other);
                Response::data(map)
            }
        }
    }

    /// A Vault envelope.
    pub fn logical(logical: Logical) -> Response {
        Response::Logical(Box::new(logical))
    }

    /// A raw 200 JSON body.
    pub fn raw(body: Value) -> Response {
        Response::Raw { status: 200, body }
    }
}
