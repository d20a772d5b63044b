//! Errors of the client commands and the exit codes they map to.

use std::process::ExitCode;

/// Failure of a client command.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The server returned a status of 400 or more.
    #[error("Error making API request.\n\nURL: {method} {url}\nCode: {status}. Errors:\n\n{}", bullets(.errors))]
    Api {
        method: String,
        url: String,
        status: u16,
        errors: Vec<String>,
    },
    /// A read found nothing at the path.
    #[error("No value found at {0}")]
    NotFound(String),
    /// The request got no response because the server is unreachable or TLS failed.
    #[error("failed to send the request to {url}: {detail}")]
    Transport { url: String, detail: String },
    /// A local problem: bad arguments, an unreadable file, an unexpected response body.
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// Returns the exit code Vault's CLI uses for this kind of error: 2 for a response from the
    /// server, 1 for everything that went wrong locally.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Api { .. } | CliError::NotFound(_) => ExitCode::from(2),
            CliError::Transport { .. } | CliError::Local(_) => ExitCode::FAILURE,
        }
    }
}

/// Joins an error and its sources, because reqwest's own message omits the cause.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn bullets(errors: &[String]) -> String {
    errors
        .iter()
        .map(|error| format!("* {error}"))
        .collect::<Vec<_>>()
        .join("\n")
}
