//! `secondary/generate-public-key`: a key pair for a later public-key activation.

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
