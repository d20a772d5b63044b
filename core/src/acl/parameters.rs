//! Request parameter rules and response-wrapping TTL bounds of a policy path rule, as Vault
//! applies them: `allowed_parameters`, `denied_parameters`, `required_parameters`,
//! `min_wrapping_ttl` and `max_wrapping_ttl`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Map, Value};

use super::policy::PolicyError;
use crate::error::Error;
use crate::request::{Operation, Request};
use crate::time::parse_duration;

/// The parameter names a rule lists, each with the values it lists. An empty value list means
/// any value, and the name `*` stands for every parameter the rule does not list.
pub type ParameterValues = BTreeMap<String, Vec<Value>>;

/// Parameter and wrapping constraints of one path rule, or the merge of the rules of several
/// policies on the same pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParameterRules {
    /// Parameters a create, update or patch request may send; `None` allows every parameter.
    pub allowed: Option<ParameterValues>,
    /// Parameters (or values of them) a create, update or patch request must not send.
    pub denied: Option<ParameterValues>,
    /// Parameters a create, update or patch request must send.
    pub required: BTreeSet<String>,
    /// The shortest `X-Vault-Wrap-TTL` the request must ask for.
    pub min_wrapping_ttl: Option<Duration>,
    /// The longest `X-Vault-Wrap-TTL` the request may ask for.
    pub max_wrapping_ttl: Option<Duration>,
}

impl ParameterRules {
    /// Reports whether the rule constrains nothing.
    pub fn is_empty(&self) -> bool {
        *self == ParameterRules::default()
    }

    /// Reads one rule key. Returns `Ok(false)` for a key that is not a parameter or wrapping
    /// key. Parameter names are lowercased, as Vault compares them.
    pub(super) fn parse_key(&mut self, key: &str, value: &Value) -> Result<bool, PolicyError> {
        match key {
            "allowed_parameters" => self.allowed = Some(parameter_values(key, value)?),
            "denied_parameters" => self.denied = Some(parameter_values(key, value)?),
            "required_parameters" => {
                let Value::Array(items) = value else {
                    return Err(shape(key, "a list of parameter names such as [\"name\"]"));
                };
                for item in items {
                    let Value::String(name) = item else {
                        return Err(shape(key, "a list of parameter names such as [\"name\"]"));
                    };
                    self.required.insert(name.to_lowercase());
                }
            }
            "min_wrapping_ttl" => self.min_wrapping_ttl = Some(ttl(key, value)?),
            "max_wrapping_ttl" => self.max_wrapping_ttl = Some(ttl(key, value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Merges the rule of another policy on the same pattern, as Vault merges them. The allowed
    /// and denied values of a name are joined, and an empty list on either side matches any
    /// value. Required names are joined. The wrapping bounds take the lower minimum and the
    /// higher maximum.
    pub fn merge(&mut self, other: &ParameterRules) {
        merge_values(&mut self.allowed, other.allowed.as_ref());
        merge_values(&mut self.denied, other.denied.as_ref());
        self.required.extend(other.required.iter().cloned());
        self.min_wrapping_ttl = match (self.min_wrapping_ttl, other.min_wrapping_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_wrapping_ttl = match (self.max_wrapping_ttl, other.max_wrapping_ttl) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Checks `request` against the rule of `pattern`. Fails with 403 naming the parameter or
    /// the wrapping bound that the request breaks.
    pub fn check(&self, pattern: &str, request: &Request) -> Result<(), Error> {
        self.check_wrapping(pattern, request)?;
        let writes = matches!(request.operation, Operation::Update | Operation::Patch);
        if !writes {
            return Ok(());
        }
        let data = lowercase_keys(&request.data);
        for name in &self.required {
            if !data.contains_key(name) {
                return Err(denied(format!(
                    "the request is missing parameter {name:?}, which the policy rule on \
                     {pattern:?} requires"
                )));
            }
        }
        if let Some(denied_values) = &self.denied {
            for (name, value) in &data {
                let listed = denied_values.get(name).or_else(|| denied_values.get("*"));
                if listed.is_some_and(|values| any_value_in(value, values)) {
                    return Err(denied(format!(
                        "parameter {name:?} or its value is denied by the policy rule on \
                         {pattern:?}"
                    )));
                }
            }
        }
        if let Some(allowed_values) = &self.allowed {
            for (name, value) in &data {
                let listed = allowed_values.get(name).or_else(|| allowed_values.get("*"));
                if !listed.is_some_and(|values| every_value_in(value, values)) {
                    return Err(denied(format!(
                        "parameter {name:?} or its value is not allowed by the policy rule on \
                         {pattern:?}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_wrapping(&self, pattern: &str, request: &Request) -> Result<(), Error> {
        if self.min_wrapping_ttl.is_none() && self.max_wrapping_ttl.is_none() {
            return Ok(());
        }
        let Some(requested) = request.wrap_ttl else {
            return Err(denied(format!(
                "the policy rule on {pattern:?} requires a wrapped response; send \
                 X-Vault-Wrap-TTL"
            )));
        };
        if let Some(min) = self.min_wrapping_ttl.filter(|min| requested < *min) {
            return Err(denied(format!(
                "X-Vault-Wrap-TTL {}s is below the minimum of {}s of the policy rule on \
                 {pattern:?}",
                requested.as_secs(),
                min.as_secs()
            )));
        }
        if let Some(max) = self.max_wrapping_ttl.filter(|max| requested > *max) {
            return Err(denied(format!(
                "X-Vault-Wrap-TTL {}s is above the maximum of {}s of the policy rule on \
                 {pattern:?}",
                requested.as_secs(),
                max.as_secs()
            )));
        }
        Ok(())
    }
}

fn denied(message: String) -> Error {
    Error::api(403, format!("permission denied: {message}"))
}

fn lowercase_keys(data: &Map<String, Value>) -> BTreeMap<String, &Value> {
    data.iter()
        .map(|(name, value)| (name.to_lowercase(), value))
        .collect()
}

/// Reports whether `value`, or each element of a list value, is in `values`. An empty list
/// matches every value. Values compare exactly, without globs.
fn every_value_in(value: &Value, values: &[Value]) -> bool {
    if values.is_empty() {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().all(|item| values.contains(item)),
        other => values.contains(other),
    }
}

/// Reports whether `value`, or any element of a list value, is in `values`. An empty list
/// matches every value.
// NOTE: a list value is rejected when any element is denied, which may be stricter than Vault
// for list values.
fn any_value_in(value: &Value, values: &[Value]) -> bool {
    if values.is_empty() {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().any(|item| values.contains(item)),
        other => values.contains(other),
    }
}

fn merge_values(into: &mut Option<ParameterValues>, other: Option<&ParameterValues>) {
    let Some(other) = other else {
        return;
    };
    let Some(existing) = into else {
        *into = Some(other.clone());
        return;
    };
    for (name, values) in other {
        match existing.get_mut(name) {
            None => {
                existing.insert(name.clone(), values.clone());
            }
            Some(current) if current.is_empty() => {}
            Some(current) if values.is_empty() => current.clear(),
            Some(current) => {
                for value in values {
                    if !current.contains(value) {
                        current.push(value.clone());
                    }
                }
            }
        }
    }
}

fn parameter_values(key: &str, value: &Value) -> Result<ParameterValues, PolicyError> {
    let expected = "an object from parameter names to lists of values, such as {\"name\" = []}";
    let Value::Object(fields) = value else {
        return Err(shape(key, expected));
    };
    let mut parameters = ParameterValues::new();
    for (name, values) in fields {
        let values = match values {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            _ => return Err(shape(key, expected)),
        };
        parameters.insert(name.to_lowercase(), values);
    }
    Ok(parameters)
}

fn ttl(key: &str, value: &Value) -> Result<Duration, PolicyError> {
    let expected = "a duration such as \"30s\" or a number of seconds";
    match value {
        Value::Number(seconds) => seconds
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| shape(key, expected)),
        Value::String(text) => parse_duration(text).map_err(|_| shape(key, expected)),
        _ => Err(shape(key, expected)),
    }
}

fn shape(key: &str, expected: &'static str) -> PolicyError {
    PolicyError::InvalidValue {
        key: key.to_owned(),
        expected,
    }
}
