//! Request fields of the replication endpoints.

use serde_json::{Map, Value};

use crate::engines::params;
use crate::error::Error;
use crate::replication::activation::ca::validate_secondary_id;

/// A string field, `None` when absent, `null` or empty.
pub(super) fn optional_string(
    data: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, Error> {
    Ok(params::string(data, field)?.filter(|text| !text.is_empty()))
}

/// The required secondary `id`, which must be usable as a DNS label.
pub(super) fn secondary_id(data: &Map<String, Value>) -> Result<String, Error> {
    let Some(id) = optional_string(data, "id")? else {
        return Err(Error::bad_request(
            "missing \"id\": name the secondary, for example id=\"east\"",
        ));
    };
    validate_secondary_id(&id).map_err(|error| Error::bad_request(error.to_string()))?;
    Ok(id)
}
