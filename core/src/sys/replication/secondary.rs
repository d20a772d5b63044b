//! `secondary/generate-public-key`: a key pair for a later public-key activation, and the
//! core side of `secondary/enable`.

use serde_json::{Map, Value};

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::replication::activation::PrivateKey;
use crate::request::{Request, Response};
use crate::storage::{Partition, Transaction};

use super::state::SECONDARY_KEY_KEY;

/// Generates and stores the key pair, replacing an earlier one, and returns the public key.
pub(super) fn generate_public_key(
    core: &Core,
    ctx: &mut Ctx<'_>,
    _request: &Request,
    txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    let mut view = core.barrier.view(txn, &mut *ctx.rng)?;
    let key = PrivateKey::generate(view.rng());
    view.put_json(Partition::Local, SECONDARY_KEY_KEY, &key)?;
    let mut data = Map::new();
    data.insert(
        "secondary_public_key".into(),
        Value::String(key.public_key().to_base64()),
    );
    Ok(Response::data(data))
}

/// Fails `secondary/enable` with a 500: activation unwraps the bundle at the primary and
/// connects to its cluster port, which core cannot do, so the server handles the path itself
/// with the steps in [`crate::replication::activate`] and never passes it here.
pub(super) fn enable_unreachable(
    _core: &Core,
    _ctx: &mut Ctx<'_>,
    _request: &Request,
    _txn: &mut dyn Transaction,
) -> Result<Response, Error> {
    Err(Error::internal(
        "sys/replication/performance/secondary/enable reached the request handler, which \
         cannot contact the primary; this server does not support secondary activation here",
    ))
}
