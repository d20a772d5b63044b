//! The messages of the forwarding protocol (ALPN `coffer-forwarding-v1`), carried by the
//! replication frame codec as postcard.
//!
//! A forwarded request carries the identity the secondary authenticated, never the client
//! token. JSON bodies travel as JSON text, because postcard cannot encode self-describing
//! values such as `serde_json::Value`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::replication::position::Position;
use crate::request::{Caller, Logical, Operation, Request, Response};

/// Maximum length of a request id, so the primary's record key stays short.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// One message on a forwarding connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardMessage {
    /// Secondary to primary: run this request.
    Request(ForwardedRequest),
    /// Primary to secondary: the response to the request with this id.
    Answer(ForwardedAnswer),
}

/// A client request that a secondary forwards to the primary.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedRequest {
    /// The secondary's id for this request, from its RNG. A retry sends the same id.
    pub request_id: String,
    /// The operation.
    pub operation: Operation,
    /// The logical path.
    pub path: String,
    /// The request data as a JSON object in text form.
    pub data_json: String,
    /// The client the secondary authenticated.
    pub identity: ForwardedIdentity,
}

/// The authenticated client of a forwarded request, as the secondary's token store records it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedIdentity {
    /// The token's accessor.
    pub accessor: String,
    /// The token's policy names. The primary grants only what its own policies of these
    /// names grant.
    pub policies: Vec<String>,
    /// The token's display name.
    pub display_name: String,
    /// The path the token was created on.
    pub token_path: String,
}

/// The primary's response to a forwarded request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedAnswer {
    /// The id of the request this responds to.
    pub request_id: String,
    /// The response or error.
    pub result: ForwardedResult,
    /// The primary's WAL position after the write, which the secondary waits for before it
    /// responds to the client. `None` when the request failed.
    pub position: Option<Position>,
}

/// A response or error in a form that postcard can carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardedResult {
    /// A Vault envelope without `auth` and `wrap_info`, which only the secondary adds.
    Logical {
        /// HTTP status.
        status: u16,
        /// The `data` object as JSON text, or `None` for `null`.
        data_json: Option<String>,
        /// `lease_id`.
        lease_id: String,
        /// `lease_duration` in seconds.
        lease_duration: u64,
        /// `renewable`.
        renewable: bool,
        /// `warnings`.
        warnings: Vec<String>,
        /// `mount_type`.
        mount_type: String,
    },
    /// A body without an envelope.
    Raw {
        /// HTTP status.
        status: u16,
        /// The JSON body as text.
        body_json: String,
    },
    /// 204 with no body.
    NoContent,
    /// An error with its status and messages.
    Error {
        /// HTTP status.
        status: u16,
        /// The messages of the `errors` list.
        messages: Vec<String>,
    },
}

impl ForwardedRequest {
    /// Builds the forwarded form of `request` for `caller`. The token, the wrap TTL and the
    /// client address stay on the secondary.
    pub fn new(request_id: String, request: &Request, caller: &Caller) -> ForwardedRequest {
        let data_json = serde_json::to_string(&request.data).unwrap_or_else(|_| "{}".to_owned());
        ForwardedRequest {
            request_id,
            operation: request.operation,
            path: request.path.clone(),
            data_json,
            identity: ForwardedIdentity {
                accessor: caller.accessor.clone(),
                policies: caller.policies.clone(),
                display_name: caller.display_name.clone(),
                token_path: caller.token_path.clone(),
            },
        }
    }

    /// Rebuilds the logical request the primary runs: no token, no wrapping.
    pub fn to_request(&self) -> Result<Request, Error> {
        let data: Map<String, Value> = serde_json::from_str(&self.data_json).map_err(|error| {
            Error::bad_request(format!(
                "invalid data in forwarded request {}: {error}",
                self.request_id
            ))
        })?;
        let mut request = Request::new(self.operation, self.path.clone());
        request.id = self.request_id.clone();
        request.data = data;
        Ok(request)
    }

    /// Returns the caller the primary authorises: the claimed identity, with no token of its
    /// own on the primary, so it has no cubbyhole there.
    pub fn caller(&self) -> Caller {
        let mut policies = self.identity.policies.clone();
        policies.sort();
        policies.dedup();
        Caller {
            accessor: self.identity.accessor.clone(),
            token_hash: String::new(),
            policies,
            display_name: self.identity.display_name.clone(),
            token_path: self.identity.token_path.clone(),
        }
    }
}

/// `Debug` leaves out the data, which can hold secret values.
impl std::fmt::Debug for ForwardedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedRequest")
            .field("request_id", &self.request_id)
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ForwardedResult {
    /// Converts a handler's result. A response with `auth` or `wrap_info` is an internal
    /// error, because those carry tokens that a forward never issues.
    pub fn from_result(result: &Result<Response, Error>) -> ForwardedResult {
        match result {
            Ok(response) => ForwardedResult::from_response(response),
            Err(error) => ForwardedResult::from_error(error),
        }
    }

    /// Converts an error.
    pub fn from_error(error: &Error) -> ForwardedResult {
        let messages = match error {
            Error::Api { messages, .. } => messages.clone(),
            Error::Storage(storage) => vec![storage.to_string()],
        };
        ForwardedResult::Error {
            status: error.status(),
            messages,
        }
    }

    fn from_response(response: &Response) -> ForwardedResult {
        match response {
            Response::NoContent => ForwardedResult::NoContent,
            Response::Raw { status, body } => ForwardedResult::Raw {
                status: *status,
                body_json: body.to_string(),
            },
            Response::Logical(logical) if logical.auth.is_some() || logical.wrap_info.is_some() => {
                ForwardedResult::from_error(&Error::internal(
                    "a forwarded request produced a token, which the primary never returns to \
                     a secondary",
                ))
            }
            Response::Logical(logical) => ForwardedResult::Logical {
                status: logical.status,
                data_json: logical
                    .data
                    .as_ref()
                    .map(|data| Value::Object(data.clone()).to_string()),
                lease_id: logical.lease_id.clone(),
                lease_duration: logical.lease_duration,
                renewable: logical.renewable,
                warnings: logical.warnings.clone(),
                mount_type: logical.mount_type.clone(),
            },
        }
    }

    /// Converts back to the handler's result, for the secondary's post-processing.
    pub fn into_result(self) -> Result<Response, Error> {
        match self {
            ForwardedResult::NoContent => Ok(Response::NoContent),
            ForwardedResult::Raw { status, body_json } => Ok(Response::Raw {
                status,
                body: parse_json(&body_json)?,
            }),
            ForwardedResult::Error { status, messages } => Err(Error::Api { status, messages }),
            ForwardedResult::Logical {
                status,
                data_json,
                lease_id,
                lease_duration,
                renewable,
                warnings,
                mount_type,
            } => {
                let data = match data_json {
                    None => None,
                    Some(text) => match parse_json(&text)? {
                        Value::Object(map) => Some(map),
                        _ => return Err(invalid_answer("data is not a JSON object")),
                    },
                };
                Ok(Response::logical(Logical {
                    status,
                    data,
                    lease_id,
                    lease_duration,
                    renewable,
                    warnings,
                    mount_type,
                    ..Logical::default()
                }))
            }
        }
    }
}

fn parse_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str(text).map_err(|error| invalid_answer(&error.to_string()))
}

fn invalid_answer(reason: &str) -> Error {
    Error::internal(format!(
        "the primary's response to a forwarded request is invalid: {reason}"
    ))
}
