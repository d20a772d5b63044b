//! The Vault-compatible HTTP API: request mapping, response rendering and the hyper server.

mod activity;
pub mod request;
pub mod response;
pub mod server;

pub use request::{MapError, map_request};
pub use response::{render_error, render_errors, render_response, render_result};
pub use server::{HttpLimits, serve};
