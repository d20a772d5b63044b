//! Parsing of policy text, in HCL or JSON form, into path rules with capability sets.

use std::collections::BTreeMap;

use serde_json::Value;

use super::parameters::ParameterRules;

use crate::error::Error;
use crate::hcl_shape;

/// A set of capabilities, such as `["read", "list"]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(u16);

impl Capabilities {
    /// No capability at all.
    pub const NONE: Capabilities = Capabilities(0);
    /// `create`: a write to a target that does not exist yet.
    pub const CREATE: Capabilities = Capabilities(1);
    /// `read`.
    pub const READ: Capabilities = Capabilities(1 << 1);
    /// `update`: a write to an existing target.
    pub const UPDATE: Capabilities = Capabilities(1 << 2);
    /// `patch`.
    pub const PATCH: Capabilities = Capabilities(1 << 3);
    /// `delete`.
    pub const DELETE: Capabilities = Capabilities(1 << 4);
    /// `list`.
    pub const LIST: Capabilities = Capabilities(1 << 5);
    /// `sudo`: required in addition on root-protected paths.
    pub const SUDO: Capabilities = Capabilities(1 << 6);
    /// `deny`: overrides every other capability.
    pub const DENY: Capabilities = Capabilities(1 << 7);
    /// Everything, as the `root` policy grants. It has no name in policy text.
    pub const ROOT: Capabilities = Capabilities(1 << 8);

    /// The capability names in the alphabetical order Vault reports them in.
    const NAMES: [(&'static str, Capabilities); 8] = [
        ("create", Capabilities::CREATE),
        ("delete", Capabilities::DELETE),
        ("deny", Capabilities::DENY),
        ("list", Capabilities::LIST),
        ("patch", Capabilities::PATCH),
        ("read", Capabilities::READ),
        ("sudo", Capabilities::SUDO),
        ("update", Capabilities::UPDATE),
    ];

    /// Parses one capability name.
    pub fn from_name(name: &str) -> Option<Capabilities> {
        Capabilities::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, capability)| *capability)
    }

    /// Both sets together.
    pub fn union(self, other: Capabilities) -> Capabilities {
        Capabilities(self.0 | other.0)
    }

    /// Returns whether every capability of `other` is in this set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Applies `deny`: a set containing `deny` grants nothing else.
    pub fn effective(self) -> Capabilities {
        if self.contains(Capabilities::DENY) {
            Capabilities::DENY
        } else {
            self
        }
    }

    /// Lists the names as `sys/capabilities-self` returns them: `["root"]` for root, `["deny"]` for
    /// an empty or denying set, otherwise the sorted names.
    pub fn names(self) -> Vec<String> {
        if self.contains(Capabilities::ROOT) {
            return vec![String::from("root")];
        }
        let effective = self.effective();
        if effective.is_empty() {
            return vec![String::from("deny")];
        }
        Capabilities::NAMES
            .iter()
            .filter(|(_, capability)| effective.contains(*capability))
            .map(|(name, _)| String::from(*name))
            .collect()
    }
}

/// A parsed ACL policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The policy's name, lowercased.
    pub name: String,
    /// The text exactly as written, returned by reads.
    pub raw: String,
    /// The capabilities of each path pattern; rules for the same pattern are unioned.
    pub rules: BTreeMap<String, Capabilities>,
    /// The parameter and wrapping constraints of the patterns that have any.
    pub parameters: BTreeMap<String, ParameterRules>,
}

/// An error in policy text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is neither valid HCL nor valid JSON.
    #[error("failed to parse policy: {0}")]
    Syntax(String),
    /// A capability name that Vault does not know.
    #[error("invalid capability {0:?}")]
    InvalidCapability(String),
    /// A legacy `policy = "..."` keyword other than deny, read, write or sudo.
    #[error("invalid policy {0:?}: use deny, read, write or sudo")]
    InvalidKeyword(String),
    /// A key that policies do not have.
    #[error("invalid key {0:?} in policy: use path blocks with capabilities")]
    InvalidKey(String),
    /// A value of the wrong shape.
    #[error("invalid value for {key:?} in policy: {expected}")]
    InvalidValue {
        /// The key whose value is wrong.
        key: String,
        /// The expected shape of the value.
        expected: &'static str,
    },
}

impl From<PolicyError> for Error {
    fn from(error: PolicyError) -> Error {
        Error::bad_request(error.to_string())
    }
}

/// Path keys that Vault accepts and Coffer ignores.
// NOTE: `expiration` (an enterprise rule end time) is accepted but not enforced.
const IGNORED_RULE_KEYS: &[&str] = &["expiration"];

/// One `path` rule before its capabilities are resolved.
#[derive(Default)]
struct RawRule {
    capabilities: Vec<String>,
    keyword: Option<String>,
    parameters: ParameterRules,
}

/// Parses policy text in HCL or JSON form. Text whose first non-blank character is `{` is JSON.
pub fn parse_policy(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let raw_rules = if text.trim_start().starts_with('{') {
        parse_json(text)?
    } else {
        parse_hcl(text)?
    };
    let mut rules: BTreeMap<String, Capabilities> = BTreeMap::new();
    let mut parameters: BTreeMap<String, ParameterRules> = BTreeMap::new();
    for (pattern, raw_rule) in raw_rules {
        let capabilities = resolve(&raw_rule)?;
        if !raw_rule.parameters.is_empty() {
            parameters
                .entry(pattern.clone())
                .or_default()
                .merge(&raw_rule.parameters);
        }
        let entry = rules.entry(pattern).or_default();
        *entry = entry.union(capabilities);
    }
    Ok(Policy {
        name: name.to_lowercase(),
        raw: text.to_owned(),
        rules,
        parameters,
    })
}

fn resolve(rule: &RawRule) -> Result<Capabilities, PolicyError> {
    let mut capabilities = Capabilities::NONE;
    for name in &rule.capabilities {
        let capability = Capabilities::from_name(name)
            .ok_or_else(|| PolicyError::InvalidCapability(name.clone()))?;
        capabilities = capabilities.union(capability);
    }
    if let Some(keyword) = &rule.keyword {
        capabilities = capabilities.union(expand_keyword(keyword)?);
    }
    Ok(capabilities.effective())
}

/// Expands the legacy `policy = "..."` keywords.
fn expand_keyword(keyword: &str) -> Result<Capabilities, PolicyError> {
    let write = Capabilities::CREATE
        .union(Capabilities::READ)
        .union(Capabilities::UPDATE)
        .union(Capabilities::DELETE)
        .union(Capabilities::LIST);
    match keyword {
        "deny" => Ok(Capabilities::DENY),
        "read" => Ok(Capabilities::READ.union(Capabilities::LIST)),
        "write" => Ok(write),
        "sudo" => Ok(write.union(Capabilities::SUDO)),
        other => Err(PolicyError::InvalidKeyword(other.to_owned())),
    }
}

fn parse_hcl(text: &str) -> Result<Vec<(String, RawRule)>, PolicyError> {
    // A policy is a list of blocks with literal values, so operators are never needed.
    hcl_shape::check(text, hcl_shape::MAX_NESTING, hcl_shape::Operators::Reject)
        .map_err(|error| PolicyError::Syntax(error.to_string()))?;
    let body = hcl::parse(text).map_err(|error| PolicyError::Syntax(error.to_string()))?;
    let mut rules = Vec::new();
    for structure in body.iter() {
        match structure {
            hcl::Structure::Attribute(attribute) if attribute.key() == "name" => {}
            hcl::Structure::Attribute(attribute) => {
                return Err(PolicyError::InvalidKey(attribute.key().to_owned()));
            }
            hcl::Structure::Block(block) => rules.push(hcl_path_block(block)?),
        }
    }
    Ok(rules)
}

fn hcl_path_block(block: &hcl::Block) -> Result<(String, RawRule), PolicyError> {
    if block.identifier() != "path" {
        return Err(PolicyError::InvalidKey(block.identifier().to_owned()));
    }
    let [label] = block.labels() else {
        return Err(PolicyError::InvalidValue {
            key: String::from("path"),
            expected: "a path block takes exactly one quoted path",
        });
    };
    let mut rule = RawRule::default();
    for structure in block.body().iter() {
        let (key, expression) = match structure {
            hcl::Structure::Attribute(attribute) => (attribute.key(), Some(attribute.expr())),
            hcl::Structure::Block(inner) => (inner.identifier(), None),
        };
        match (key, expression) {
            ("capabilities", Some(expression)) => rule.capabilities = hcl_strings(expression)?,
            ("policy", Some(hcl::Expression::String(keyword))) => {
                rule.keyword = Some(keyword.clone())
            }
            ("policy", _) => return Err(policy_keyword_shape()),
            (key, _) if IGNORED_RULE_KEYS.contains(&key) => {}
            (key, Some(expression)) if is_parameter_key(key) => {
                rule.parameters
                    .parse_key(key, &hcl_to_json(key, expression)?)?;
            }
            (key, _) => return Err(PolicyError::InvalidKey(key.to_owned())),
        }
    }
    Ok((label.as_str().to_owned(), rule))
}

/// Converts a literal HCL value (string, number, boolean, null, list or object) to JSON.
fn hcl_to_json(key: &str, expression: &hcl::Expression) -> Result<Value, PolicyError> {
    let literal = || PolicyError::InvalidValue {
        key: key.to_owned(),
        expected: "a literal value: a string, number, boolean, list or object",
    };
    Ok(match expression {
        hcl::Expression::Null => Value::Null,
        hcl::Expression::Bool(value) => Value::Bool(*value),
        hcl::Expression::Number(number) => serde_json::to_value(number).map_err(|_| literal())?,
        hcl::Expression::String(text) => Value::String(text.clone()),
        hcl::Expression::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| hcl_to_json(key, item))
                .collect::<Result<_, _>>()?,
        ),
        hcl::Expression::Object(object) => {
            let mut map = serde_json::Map::new();
            for (object_key, value) in object {
                let name = match object_key {
                    hcl::ObjectKey::Identifier(identifier) => identifier.as_str().to_owned(),
                    hcl::ObjectKey::Expression(hcl::Expression::String(text)) => text.clone(),
                    _ => return Err(literal()),
                };
                map.insert(name, hcl_to_json(key, value)?);
            }
            Value::Object(map)
        }
        _ => return Err(literal()),
    })
}

fn hcl_strings(expression: &hcl::Expression) -> Result<Vec<String>, PolicyError> {
    let hcl::Expression::Array(items) = expression else {
        return Err(capabilities_shape());
    };
    items
        .iter()
        .map(|item| match item {
            hcl::Expression::String(name) => Ok(name.clone()),
            _ => Err(capabilities_shape()),
        })
        .collect()
}

fn parse_json(text: &str) -> Result<Vec<(String, RawRule)>, PolicyError> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| PolicyError::Syntax(error.to_string()))?;
    let Value::Object(top) = value else {
        return Err(PolicyError::Syntax(String::from("expected a JSON object")));
    };
    let mut rules = Vec::new();
    for (key, value) in &top {
        match key.as_str() {
            "name" => {}
            "path" => json_paths(value, &mut rules)?,
            other => return Err(PolicyError::InvalidKey(other.to_owned())),
        }
    }
    Ok(rules)
}

/// Reads `"path": {...}`, or the list form `"path": [{...}, {...}]` that HCL's JSON syntax allows.
fn json_paths(value: &Value, rules: &mut Vec<(String, RawRule)>) -> Result<(), PolicyError> {
    let objects: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for object in objects {
        let Value::Object(paths) = object else {
            return Err(PolicyError::InvalidValue {
                key: String::from("path"),
                expected: "an object from path patterns to rules",
            });
        };
        for (pattern, rule) in paths {
            rules.push((pattern.clone(), json_rule(rule)?));
        }
    }
    Ok(())
}

fn json_rule(value: &Value) -> Result<RawRule, PolicyError> {
    let Value::Object(fields) = value else {
        return Err(PolicyError::InvalidValue {
            key: String::from("path"),
            expected: "each path maps to an object such as {\"capabilities\": [\"read\"]}",
        });
    };
    let mut rule = RawRule::default();
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("capabilities", Value::Array(items)) => rule.capabilities = json_strings(items)?,
            ("capabilities", _) => return Err(capabilities_shape()),
            ("policy", Value::String(keyword)) => rule.keyword = Some(keyword.clone()),
            ("policy", _) => return Err(policy_keyword_shape()),
            (key, _) if IGNORED_RULE_KEYS.contains(&key) => {}
            (key, value) if is_parameter_key(key) => {
                rule.parameters.parse_key(key, &json_rule_value(value))?;
            }
            (key, _) => return Err(PolicyError::InvalidKey(key.to_owned())),
        }
    }
    Ok(rule)
}

fn is_parameter_key(key: &str) -> bool {
    matches!(
        key,
        "allowed_parameters"
            | "denied_parameters"
            | "required_parameters"
            | "min_wrapping_ttl"
            | "max_wrapping_ttl"
    )
}

/// HCL's JSON form may wrap a rule's object in a one-element list, as in
/// `"allowed_parameters": [{"name": []}]`.
fn json_rule_value(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.len() == 1 && items[0].is_object() => items[0].clone(),
        other => other.clone(),
    }
}

fn json_strings(items: &[Value]) -> Result<Vec<String>, PolicyError> {
    items
        .iter()
        .map(|item| match item {
            Value::String(name) => Ok(name.clone()),
            _ => Err(capabilities_shape()),
        })
        .collect()
}

fn capabilities_shape() -> PolicyError {
    PolicyError::InvalidValue {
        key: String::from("capabilities"),
        expected: "a list of capability names such as [\"read\", \"list\"]",
    }
}

fn policy_keyword_shape() -> PolicyError {
    PolicyError::InvalidValue {
        key: String::from("policy"),
        expected: "one of the strings deny, read, write or sudo",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn deeply_nested_braces_are_rejected_quickly() {
        // A fuzzer found this text: the HCL parser took 144 s on it before the depth check.
        let text =
            include_str!("../../../fuzz/regressions/policy_parser/hcl-nested-braces-backtracking");
        // The operator check now rejects this text before its nesting is counted.
        let error = super::parse_policy("slow", text).unwrap_err();
        assert!(matches!(error, PolicyError::Syntax(_)), "{error}");
        let nested = format!("path \"a\" {}{}", "{".repeat(17), "}".repeat(17));
        let error = super::parse_policy("deep", &nested).unwrap_err();
        assert!(error.to_string().contains("levels deep"), "{error}");
        let quoted = r#"path "secret/{{{{{{{{{{{{{{{{{{{{" { capabilities = ["read"] }"#;
        assert!(super::parse_policy("quoted", quoted).is_ok());
    }

    #[test]
    fn operator_chains_are_rejected_quickly() {
        // A fuzzer found this text: unclosed parentheses around chains of `-` kept the HCL
        // parser busy for more than a minute.
        let text =
            include_str!("../../../fuzz/regressions/policy_parser/hcl-operator-chain-backtracking");
        let error = super::parse_policy("slow", text).unwrap_err();
        assert!(error.to_string().contains("unexpected '-'"), "{error}");
        let negated = "path \"a\" { capabilities = !true }";
        assert!(super::parse_policy("negated", negated).is_err());
    }

    #[test]
    fn unclosed_templates_are_rejected_quickly() {
        // A fuzzer found this text: unclosed `%{` directives inside a string kept the HCL
        // parser busy for more than 15 s.
        let text = include_str!(
            "../../../fuzz/regressions/policy_parser/hcl-unclosed-template-backtracking"
        );
        let error = super::parse_policy("slow", text).unwrap_err();
        assert!(error.to_string().contains("template sequence"), "{error}");
    }

    #[test]
    fn comments_and_strings_may_hold_operators() {
        let text = "# read-only (for apps)\n\
                    // also: a+b\n\
                    /* (not { an [ expression */\n\
                    path \"secret/a-b/(x)\" {\n  capabilities = [\"read\"] # !\n}\n\
                    path \"secret/c\" {\n  allowed_parameters = { bare-key = [] }\n}\n";
        let policy = super::parse_policy("commented", text).unwrap();
        assert_eq!(policy.rules.len(), 2);
    }

    use super::*;

    fn caps(policy: &Policy, pattern: &str) -> Vec<String> {
        policy.rules[pattern].names()
    }

    #[test]
    fn hcl_and_json_forms_parse_equal() {
        let hcl = r#"
            path "secret/data/*" { capabilities = ["read", "list"] }
            path "sys/health" { capabilities = ["read", "sudo"] }
        "#;
        let json = r#"{"path": {"secret/data/*": {"capabilities": ["read", "list"]},
                       "sys/health": {"capabilities": ["read", "sudo"]}}}"#;
        let from_hcl = parse_policy("p", hcl).unwrap();
        let from_json = parse_policy("p", json).unwrap();
        assert_eq!(from_hcl.rules, from_json.rules);
        assert_eq!(caps(&from_hcl, "sys/health"), ["read", "sudo"]);
    }

    #[test]
    fn legacy_keywords_expand() {
        let text = r#"
            path "a" { policy = "deny" }
            path "b" { policy = "read" }
            path "c" { policy = "write" }
            path "d" { policy = "sudo" }
        "#;
        let policy = parse_policy("legacy", text).unwrap();
        assert_eq!(caps(&policy, "a"), ["deny"]);
        assert_eq!(caps(&policy, "b"), ["list", "read"]);
        assert_eq!(
            caps(&policy, "c"),
            ["create", "delete", "list", "read", "update"]
        );
        assert_eq!(
            caps(&policy, "d"),
            ["create", "delete", "list", "read", "sudo", "update"]
        );
    }

    #[test]
    fn unknown_capability_is_rejected() {
        let error = parse_policy("p", r#"path "a" { capabilities = ["fly"] }"#).unwrap_err();
        assert_eq!(error.to_string(), "invalid capability \"fly\"");
        let error: Error = error.into();
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn unknown_keyword_is_rejected() {
        let error = parse_policy("p", r#"path "a" { policy = "all" }"#).unwrap_err();
        assert_eq!(error, PolicyError::InvalidKeyword(String::from("all")));
    }

    #[test]
    fn deny_in_rule_drops_other_capabilities() {
        let policy = parse_policy("p", r#"path "a" { capabilities = ["read", "deny"] }"#).unwrap();
        assert_eq!(caps(&policy, "a"), ["deny"]);
    }

    #[test]
    fn optional_rule_keys_are_accepted() {
        let text = r#"
            path "secret/*" {
                capabilities = ["create"]
                allowed_parameters = { "foo" = [] }
                min_wrapping_ttl = "1s"
            }
        "#;
        let policy = parse_policy("p", text).unwrap();
        assert_eq!(caps(&policy, "secret/*"), ["create"]);
    }

    #[test]
    fn repeated_pattern_unions_capabilities() {
        let text = r#"
            path "a" { capabilities = ["read"] }
            path "a" { capabilities = ["list"] }
        "#;
        let policy = parse_policy("p", text).unwrap();
        assert_eq!(caps(&policy, "a"), ["list", "read"]);
    }

    #[test]
    fn syntax_errors_are_rejected() {
        assert!(matches!(
            parse_policy("p", "path \"a\" {"),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            parse_policy("p", "{\"path\": "),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            parse_policy("p", "other \"a\" {}"),
            Err(PolicyError::InvalidKey(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in ".{0,200}") {
            let _ = parse_policy("p", &text);
        }

        #[test]
        fn parse_never_panics_on_policy_like_text(
            pattern in "[a-z/+*]{0,20}",
            capability in "[a-z]{0,8}",
        ) {
            let text = format!("path \"{pattern}\" {{ capabilities = [\"{capability}\"] }}");
            let parsed = parse_policy("p", &text);
            proptest::prop_assert_eq!(
                parsed.is_ok(),
                Capabilities::from_name(&capability).is_some()
            );
        }
    }

    #[test]
    fn name_is_lowercased_and_text_kept() {
        let text = "path \"a\" { capabilities = [\"read\"] }";
        let policy = parse_policy("WeB", text).unwrap();
        assert_eq!(policy.name, "web");
        assert_eq!(policy.raw, text);
    }
}
