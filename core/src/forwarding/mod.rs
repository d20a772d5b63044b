//! Request forwarding from a secondary to the primary, and read-your-writes.
//!
//! - [`message`]: what a secondary sends and what the primary returns.
//! - [`executor`]: the primary's at-most-once executor of forwarded requests.
//! - [`index`]: the signed `X-Vault-Index` header.

pub mod executor;
pub mod index;
pub mod message;

#[cfg(test)]
mod tests;

pub use executor::{DEFAULT_RETRY_WINDOW, check_forwardable, execute_forwarded};
pub use index::{IndexError, IndexKey, IndexState, parse_index};
pub use message::{
    ForwardMessage, ForwardedAnswer, ForwardedIdentity, ForwardedRequest, ForwardedResult,
};
