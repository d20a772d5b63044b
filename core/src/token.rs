//! The token store: tokens kept by salted hash in the local partition, and `auth/token/`.

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Caller, Request, Response};
use crate::storage::Transaction;

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
