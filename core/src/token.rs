//! The token store: tokens kept by salted hash in the local partition, and `auth/token/`.

use crate::Core;
use crate::barrier::SecureView;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response, Secret};
use crate::storage::Transaction;
use crate::time::Timestamp;

/// Token store settings and helpers.
#[derive(Default)]
pub struct TokenStore {}

impl TokenStore {
    /// A token store with default settings.
    pub fn new() -> TokenStore {
        TokenStore::default()
    }
}

/// Looks up the request's token and spends one use when it has a limit.
pub fn authenticate(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _request: &Request,
    _txn: &mut dyn Transaction,
) -> Result<Caller, Error> {
    Err(Error::permission_denied())
}

/// Handles `auth/token/...`.
pub fn handle(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    request: &Request,
    _caller: Option<&Caller>,
    _txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    Err(Error::no_handler(&request.path))
}

/// Creates a root token (policy `root`, no TTL, orphan) and returns it. `sys/init` and
/// `sys/generate-root` call it.
pub fn create_root_token(
    _core: &Core,
    _view: &mut SecureView<'_>,
    _now: Timestamp,
) -> Result<Secret, Error> {
    Err(Error::internal(
        "the token store cannot create root tokens yet",
    ))
}
