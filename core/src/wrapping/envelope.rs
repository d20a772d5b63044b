//! The wrapped response as stored: Vault's JSON envelope, kept as text.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::request::{Auth, Logical, Secret};

/// A response serialised as Vault's envelope, as it is stored in a wrapping token's cubbyhole.
///
/// It contains whatever the response contained (secrets, tokens), so `Debug` prints only the
/// type name and the text is zeroed on drop.
pub(crate) struct WrappedResponse(Zeroizing<String>);

impl WrappedResponse {
    /// Serialises `logical`, the response to the request `request_id`, as Vault's envelope.
    pub(crate) fn of(request_id: &str, logical: &Logical) -> Result<WrappedResponse, Error> {
        let envelope = EnvelopeOut {
            request_id,
            lease_id: &logical.lease_id,
            renewable: logical.renewable,
            lease_duration: logical.lease_duration,
            data: logical.data.as_ref(),
            wrap_info: None,
            warnings: (!logical.warnings.is_empty()).then_some(logical.warnings.as_slice()),
            auth: logical.auth.as_ref(),
            mount_type: &logical.mount_type,
        };
        Ok(WrappedResponse(Zeroizing::new(serde_json::to_string(
            &envelope,
        )?)))
    }

    /// Serialises a response whose only content is `data`.
    pub(crate) fn data(data: Map<String, Value>) -> Result<WrappedResponse, Error> {
        WrappedResponse::of("", &Logical::with_data(data))
    }

    /// Takes stored envelope text as it is.
    pub(crate) fn from_text(text: String) -> WrappedResponse {
        WrappedResponse(Zeroizing::new(text))
    }

    /// Returns the envelope as JSON text.
    pub(crate) fn text(&self) -> &str {
        &self.0
    }

    /// Parses the envelope back into the response it was made from. `wrap_info` is never
    /// restored: a wrapped response was not itself wrapped.
    pub(crate) fn to_logical(&self) -> Result<Logical, Error> {
        let envelope: EnvelopeIn = serde_json::from_str(&self.0)?;
        Ok(Logical {
            status: 200,
            data: envelope.data,
            auth: envelope.auth.map(StoredAuth::into_auth),
            lease_id: envelope.lease_id,
            lease_duration: envelope.lease_duration,
            renewable: envelope.renewable,
            warnings: envelope.warnings.unwrap_or_default(),
            wrap_info: None,
            mount_type: envelope.mount_type,
        })
    }
}

impl fmt::Debug for WrappedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappedResponse(..)")
    }
}

/// The envelope as written, borrowing from the response.
#[derive(Serialize)]
struct EnvelopeOut<'a> {
    request_id: &'a str,
    lease_id: &'a str,
    renewable: bool,
    lease_duration: u64,
    data: Option<&'a Map<String, Value>>,
    wrap_info: Option<()>,
    warnings: Option<&'a [String]>,
    auth: Option<&'a Auth>,
    #[serde(skip_serializing_if = "str::is_empty")]
    mount_type: &'a str,
}

/// The envelope as read back. Every field has a default, so the shorter `{"data": ...}` form
/// reads too.
#[derive(Deserialize)]
struct EnvelopeIn {
    #[serde(default)]
    lease_id: String,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
    #[serde(default)]
    auth: Option<StoredAuth>,
    #[serde(default)]
    mount_type: String,
}

/// An `auth` block as read back. It contains a client token, so it has no `Debug`.
#[derive(Deserialize)]
struct StoredAuth {
    client_token: String,
    #[serde(default)]
    accessor: String,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    token_policies: Vec<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    orphan: bool,
    #[serde(default)]
    num_uses: u64,
}

impl StoredAuth {
    fn into_auth(self) -> Auth {
        Auth {
            client_token: Secret::new(self.client_token),
            accessor: self.accessor,
            policies: self.policies,
            token_policies: self.token_policies,
            metadata: self.metadata,
            lease_duration: self.lease_duration,
            renewable: self.renewable,
            entity_id: self.entity_id,
            token_type: self.token_type,
            orphan: self.orphan,
            num_uses: self.num_uses,
            mfa_requirement: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn auth() -> Auth {
        Auth {
            client_token: Secret::new("hvs.inner"),
            accessor: "inner-accessor".to_owned(),
            policies: vec!["default".to_owned()],
            token_policies: vec!["default".to_owned()],
            lease_duration: 60,
            renewable: true,
            token_type: "service".to_owned(),
            ..Auth::default()
        }
    }

    #[test]
    fn envelope_round_trips_data_auth_and_warnings() {
        let logical = Logical {
            status: 200,
            data: Some(json!({"k": 1}).as_object().unwrap().clone()),
            auth: Some(auth()),
            warnings: vec!["careful".to_owned()],
            mount_type: "kv".to_owned(),
            ..Logical::default()
        };
        let wrapped = WrappedResponse::of("req-1", &logical).unwrap();
        let text: Value = serde_json::from_str(wrapped.text()).unwrap();
        assert_eq!(text["request_id"], "req-1");
        assert_eq!(text["wrap_info"], Value::Null);
        assert_eq!(text["auth"]["client_token"], "hvs.inner");
        assert_eq!(wrapped.to_logical().unwrap(), logical);
    }

    #[test]
    fn envelope_nulls_empty_fields() {
        let wrapped = WrappedResponse::data(Map::new()).unwrap();
        let text: Value = serde_json::from_str(wrapped.text()).unwrap();
        assert_eq!(text["warnings"], Value::Null);
        assert_eq!(text["auth"], Value::Null);
        assert!(text.get("mount_type").is_none());
    }

    #[test]
    fn data_only_form_reads_back() {
        let wrapped = WrappedResponse::from_text(r#"{"data":{"a":"b"}}"#.to_owned());
        let logical = wrapped.to_logical().unwrap();
        assert_eq!(logical.data.unwrap()["a"], "b");
        assert_eq!(logical.auth, None);
    }

    #[test]
    fn debug_hides_the_response() {
        let wrapped = WrappedResponse::of(
            "",
            &Logical {
                auth: Some(auth()),
                ..Logical::default()
            },
        )
        .unwrap();
        assert_eq!(format!("{wrapped:?}"), "WrappedResponse(..)");
    }
}
