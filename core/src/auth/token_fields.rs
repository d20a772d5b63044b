//! The `token_*` settings that users and roles carry, and the tokens they give at login.
//!
//! Vault still accepts the older names `policies`, `ttl`, `max_ttl` and `period`. A write with an older name sets the `token_*` value and remembers that the
//! older name is in use, so reads return it too. A write with the `token_*` name drops it.
//! `token_bound_cidrs` and the older `bound_cidrs` are accepted only when empty, because the
//! token store cannot bind tokens to addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Mount;
use super::fields::string_list;
use crate::acl::ROOT_POLICY;
use crate::engines::params;
use crate::error::Error;
use crate::token::TokenParams;

/// The token settings of a user or role. Durations are whole seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenFields {
    pub(crate) token_policies: Vec<String>,
    pub(crate) token_ttl: u64,
    pub(crate) token_max_ttl: u64,
    pub(crate) token_explicit_max_ttl: u64,
    pub(crate) token_period: u64,
    pub(crate) token_no_default_policy: bool,
    pub(crate) token_num_uses: u64,
    /// The older field names a client set, such as `policies`.
    #[serde(default)]
    pub(crate) legacy: BTreeSet<String>,
}

/// A `token_*` field with its older name, if it has one.
const ALIASES: [(&str, Option<&str>); 7] = [
    ("token_policies", Some("policies")),
    ("token_ttl", Some("ttl")),
    ("token_max_ttl", Some("max_ttl")),
    ("token_period", Some("period")),
    ("token_explicit_max_ttl", None),
    ("token_no_default_policy", None),
    ("token_num_uses", None),
];

impl TokenFields {
    /// Applies the token settings present in `data`; absent fields keep their value.
    pub(crate) fn update(&mut self, data: &Map<String, Value>) -> Result<(), Error> {
        for (field, alias) in ALIASES {
            let (name, is_legacy) = match alias {
                Some(old) if !data.contains_key(field) && data.contains_key(old) => (old, true),
                _ => (field, false),
            };
            if !data.contains_key(name) {
                continue;
            }
            self.set(field, name, data)?;
            if let Some(old) = alias {
                if is_legacy {
                    self.legacy.insert(old.to_owned());
                } else {
                    self.legacy.remove(old);
                }
            }
        }
        check_unsupported(data)?;
        if self.token_max_ttl > 0 && self.token_ttl > self.token_max_ttl {
            return Err(Error::bad_request(format!(
                "token_ttl ({}s) must not be greater than token_max_ttl ({}s)",
                self.token_ttl, self.token_max_ttl
            )));
        }
        Ok(())
    }

    /// Sets `field` from the request value named `name`.
    fn set(&mut self, field: &str, name: &str, data: &Map<String, Value>) -> Result<(), Error> {
        let seconds = || -> Result<u64, Error> {
            Ok(params::duration(data, name)?.unwrap_or_default().as_secs())
        };
        match field {
            "token_policies" => {
                self.token_policies =
                    sanitize_policies(string_list(data, name)?.unwrap_or_default())
            }
            "token_ttl" => self.token_ttl = seconds()?,
            "token_max_ttl" => self.token_max_ttl = seconds()?,
            "token_explicit_max_ttl" => self.token_explicit_max_ttl = seconds()?,
            "token_period" => self.token_period = seconds()?,
            "token_no_default_policy" => {
                self.token_no_default_policy = params::boolean(data, name)?.unwrap_or_default()
            }
            "token_num_uses" => self.token_num_uses = params::uint(data, name)?.unwrap_or_default(),
            _ => {}
        }
        Ok(())
    }

    /// Adds the settings to a read response, with the older names still in use.
    pub(crate) fn write_json(&self, out: &mut Map<String, Value>) {
        let fields = [
            ("token_policies", json!(self.token_policies)),
            ("token_ttl", json!(self.token_ttl)),
            ("token_max_ttl", json!(self.token_max_ttl)),
            ("token_explicit_max_ttl", json!(self.token_explicit_max_ttl)),
            ("token_period", json!(self.token_period)),
            (
                "token_no_default_policy",
                json!(self.token_no_default_policy),
            ),
            ("token_num_uses", json!(self.token_num_uses)),
            ("token_bound_cidrs", json!([])),
            ("token_type", json!("default")),
        ];
        for (key, value) in fields {
            out.insert(key.to_owned(), value);
        }
        for (field, alias) in ALIASES {
            if let Some(old) = alias.filter(|old| self.legacy.contains(*old)) {
                if let Some(value) = out.get(field).cloned() {
                    out.insert(old.to_owned(), value);
                }
            }
        }
    }

    /// The properties of a token a login issues on `mount`. The mount's tuned TTLs apply when
    /// the user or role sets none, and its maximum caps the token.
    ///
    /// NOTE: `token_max_ttl` becomes the token's explicit maximum TTL, because the token store
    /// renews login tokens itself instead of asking the auth method, as Vault does.
    pub(crate) fn token_params(
        &self,
        mount: &Mount,
        display_name: String,
        path: String,
        meta: BTreeMap<String, String>,
    ) -> Result<TokenParams, Error> {
        if self.token_policies.iter().any(|p| p == ROOT_POLICY) {
            return Err(Error::bad_request("auth methods cannot create root tokens"));
        }
        let config = &mount.entry.config;
        let ttl = [self.token_ttl, config.default_lease_ttl]
            .into_iter()
            .find(|seconds| *seconds > 0)
            .map(Duration::from_secs);
        let explicit_max_ttl = [
            self.token_max_ttl,
            self.token_explicit_max_ttl,
            config.max_lease_ttl,
        ]
        .into_iter()
        .filter(|seconds| *seconds > 0)
        .min()
        .unwrap_or_default();
        Ok(TokenParams {
            policies: self.token_policies.clone(),
            no_default_policy: self.token_no_default_policy,
            display_name,
            meta,
            path,
            ttl,
            explicit_max_ttl: Duration::from_secs(explicit_max_ttl),
            period: Duration::from_secs(self.token_period),
            num_uses: self.token_num_uses,
            renewable: true,
        })
    }
}

/// Lowercases, trims, sorts and deduplicates policy names, as Vault stores them.
fn sanitize_policies(policies: Vec<String>) -> Vec<String> {
    let set: BTreeSet<String> = policies
        .into_iter()
        .map(|name| name.trim().to_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    set.into_iter().collect()
}

/// Rejects the token settings this server cannot honour, so that a client is not left
/// believing a binding or token type is in force when it is not.
fn check_unsupported(data: &Map<String, Value>) -> Result<(), Error> {
    for name in ["token_bound_cidrs", "bound_cidrs"] {
        if string_list(data, name)?.is_some_and(|list| !list.is_empty()) {
            return Err(Error::bad_request(format!(
                "{name} is not supported by this server: tokens cannot be bound to CIDR \
                 blocks; remove the field"
            )));
        }
    }
    match params::string(data, "token_type")?.as_deref() {
        None | Some("" | "default" | "service" | "default-service") => Ok(()),
        Some("batch" | "default-batch") => Err(Error::bad_request(
            "token_type batch is not supported by this server: use \"default\" or \"service\"",
        )),
        Some(other) => Err(Error::bad_request(format!(
            "unsupported token_type {other:?}: use \"default\", \"service\", \"batch\", \
             \"default-service\" or \"default-batch\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn legacy_names_set_token_fields_and_read_back() {
        let mut fields = TokenFields::default();
        fields
            .update(&data(
                json!({"policies": "B,a", "ttl": "10s", "max_ttl": 60}),
            ))
            .unwrap();
        assert_eq!(fields.token_policies, ["a", "b"]);
        assert_eq!(fields.token_ttl, 10);
        assert_eq!(fields.token_max_ttl, 60);
        let mut out = Map::new();
        fields.write_json(&mut out);
        assert_eq!(out["policies"], json!(["a", "b"]));
        assert_eq!(out["ttl"], json!(10));
        assert_eq!(out["token_type"], json!("default"));
        assert!(!out.contains_key("period"));
    }

    #[test]
    fn new_name_drops_legacy_name() {
        let mut fields = TokenFields::default();
        fields.update(&data(json!({"policies": "a"}))).unwrap();
        fields
            .update(&data(json!({"token_policies": ["c"]})))
            .unwrap();
        let mut out = Map::new();
        fields.write_json(&mut out);
        assert_eq!(out["token_policies"], json!(["c"]));
        assert!(!out.contains_key("policies"));
    }

    #[test]
    fn ttl_above_max_ttl_is_rejected() {
        let mut fields = TokenFields::default();
        let error = fields
            .update(&data(json!({"token_ttl": "2h", "token_max_ttl": "1h"})))
            .unwrap_err();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn unsupported_settings_are_rejected() {
        let mut fields = TokenFields::default();
        for body in [
            json!({"token_bound_cidrs": ["10.0.0.0/8"]}),
            json!({"token_type": "batch"}),
            json!({"token_type": "weird"}),
        ] {
            assert!(fields.update(&data(body.clone())).is_err(), "{body}");
        }
        assert_eq!(
            fields.update(&data(json!({"token_bound_cidrs": []}))),
            Ok(())
        );
    }
}
