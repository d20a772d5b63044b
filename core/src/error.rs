//! The error every request handler returns.

use crate::storage::StorageError;

/// Why a request failed, as a Vault client will see it.
///
/// `Api` errors carry the HTTP status and the messages for the `{"errors": [...]}` body. A
/// `Storage` error of kind [`StorageError::ReadOnly`] is not a failure: it tells the caller to
/// rerun the request where that partition is writable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An error reported to the client with this status and these messages.
    #[error("{status}: {}", messages.join("; "))]
    Api {
        /// HTTP status code, 400 or above.
        status: u16,
        /// The messages for the `errors` list. An empty list is Vault's plain "not found".
        messages: Vec<String>,
    },
    /// A storage error; `ReadOnly` means the request must run elsewhere.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Error {
    /// A 400 with one message.
    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::api(400, message)
    }

    /// Vault's 403, always `permission denied`.
    pub fn permission_denied() -> Error {
        Error::api(403, "permission denied")
    }

    /// A 404 with an empty `errors` list, Vault's answer for a missing secret.
    pub fn not_found() -> Error {
        Error::Api {
            status: 404,
            messages: Vec::new(),
        }
    }

    /// A 404 for a path no mount or handler serves.
    pub fn no_handler(path: &str) -> Error {
        Error::api(
            404,
            format!("no handler for route {path:?}. route entry not found."),
        )
    }

    /// A 405 for an operation the path does not support.
    pub fn unsupported_operation() -> Error {
        Error::api(405, "unsupported operation")
    }

    /// The 503 every protected path returns while sealed.
    pub fn sealed() -> Error {
        Error::api(503, "Vault is sealed")
    }

    /// A 500 with a message that must not contain secrets.
    pub fn internal(message: impl Into<String>) -> Error {
        Error::api(500, message)
    }

    /// An error with any status and one message.
    pub fn api(status: u16, message: impl Into<String>) -> Error {
        Error::Api {
            status,
            messages: vec![message.into()],
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Error::Api { status, .. } => *status,
            Error::Storage(StorageError::KeyTooLong { .. }) => 400,
            Error::Storage(_) => 500,
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error::internal(format!(
            "failed to encode or decode a stored value: {error}"
        ))
    }
}
