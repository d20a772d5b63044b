//! The cubbyhole: private storage for each token, in the local partition under
//! `cubbyhole/<token_hash>/`, gone when the token is revoked.

use crate::barrier::SecureView;
use crate::error::Error;
use crate::request::{Caller, Operation, Request, Response};
use crate::storage::Partition;

use super::{Location, kv_v1};

/// Serves a request for `path` in the caller's own cubbyhole.
pub(crate) fn handle(
    request: &Request,
    path: &str,
    caller: Option<&Caller>,
    view: &mut SecureView<'_>,
) -> Result<Response, Error> {
    let caller = caller.ok_or_else(Error::permission_denied)?;
    let location = location(&caller.token_hash)?;
    if request.operation == Operation::List {
        return kv_v1::list(path, &location, view);
    }
    if path.is_empty() || path.ends_with('/') {
        return Err(Error::bad_request(format!(
            "invalid cubbyhole path {path:?}: a secret needs a name that does not end in \"/\""
        )));
    }
    let key = location.key(path);
    match request.operation {
        Operation::Read => kv_v1::read(&key, &location, "cubbyhole", 0, view),
        Operation::Update => kv_v1::write(&key, &location, &request.data, view),
        Operation::Delete => {
            view.delete(location.partition, &key)?;
            Ok(Response::NoContent)
        }
        Operation::List | Operation::Patch => Err(Error::unsupported_operation()),
    }
}

/// The cubbyhole of the token whose salted hash is `token_hash`.
pub(crate) fn location(token_hash: &str) -> Result<Location, Error> {
    // An empty or slash-bearing hash would make one cubbyhole a prefix of another.
    if token_hash.is_empty() || token_hash.contains('/') {
        return Err(Error::internal(
            "cubbyhole needs a token hash without \"/\"",
        ));
    }
    Ok(Location {
        partition: Partition::Local,
        prefix: format!("cubbyhole/{token_hash}/"),
    })
}
