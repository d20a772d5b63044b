//! The two syntaxes of a config file, HCL and JSON, read into one tree of attributes and
//! blocks.

use serde_json::{Map, Value};

use super::ConfigError;

/// One entry of a config body.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Item {
    /// `key = value`.
    Attribute { key: String, value: Value },
    /// `identifier "label" { body }`.
    Block {
        identifier: String,
        labels: Vec<String>,
        body: Vec<Item>,
    },
}

/// Top-level keys that are blocks with one label in the JSON form: `{"listener": {"tcp": {}}}`.
const LABELLED_BLOCKS: &[&str] = &["listener", "storage", "backend", "ha_storage", "seal"];
/// Top-level keys that are blocks without a label in the JSON form.
const PLAIN_BLOCKS: &[&str] = &["replication", "telemetry"];

/// Reads `text` as JSON when it starts with `{` (an HCL body cannot) and as HCL otherwise.
pub(super) fn parse_items(text: &str) -> Result<Vec<Item>, ConfigError> {
    if text.trim_start().starts_with('{') {
        json_items(text)
    } else {
        hcl_items(text)
    }
}

fn hcl_items(text: &str) -> Result<Vec<Item>, ConfigError> {
    // Deep nesting overflows the HCL parser's stack; a config file nests two levels.
    use coffer_core::hcl_shape::{MAX_NESTING, Operators, check};
    check(text, MAX_NESTING, Operators::Allow).map_err(|error| ConfigError::Syntax {
        format: "HCL",
        message: error.to_string(),
    })?;
    let body = hcl::parse(text).map_err(|error| ConfigError::Syntax {
        format: "HCL",
        message: error.to_string(),
    })?;
    hcl_body(&body)
}

fn hcl_body(body: &hcl::Body) -> Result<Vec<Item>, ConfigError> {
    let mut items = Vec::new();
    for structure in body.iter() {
        let item = match structure {
            hcl::Structure::Attribute(attribute) => Item::Attribute {
                key: attribute.key().to_owned(),
                value: hcl_value(attribute.key(), attribute.expr())?,
            },
            hcl::Structure::Block(block) => Item::Block {
                identifier: block.identifier().to_owned(),
                labels: block
                    .labels()
                    .iter()
                    .map(|label| label.as_str().to_owned())
                    .collect(),
                body: hcl_body(block.body())?,
            },
        };
        items.push(item);
    }
    Ok(items)
}

/// Converts a literal HCL expression to JSON. Config values are never evaluated, so variables,
/// function calls and operators are rejected; an interpolated string is kept as its text.
fn hcl_value(key: &str, expression: &hcl::Expression) -> Result<Value, ConfigError> {
    use hcl::Expression;

    let value = match expression {
        Expression::Null => Value::Null,
        Expression::Bool(flag) => Value::Bool(*flag),
        Expression::Number(number) => serde_json::to_value(number).unwrap_or(Value::Null),
        Expression::String(text) => Value::String(text.clone()),
        Expression::TemplateExpr(template) => Value::String(template.to_string()),
        Expression::Parenthesis(inner) => hcl_value(key, inner)?,
        Expression::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| hcl_value(key, item))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(object) => {
            let mut map = Map::new();
            for (object_key, item) in object {
                map.insert(hcl_object_key(key, object_key)?, hcl_value(key, item)?);
            }
            Value::Object(map)
        }
        _ => {
            return Err(ConfigError::Invalid(format!(
                "the value of {key:?} must be a literal (string, number, bool, list or object); \
                 config values are not evaluated"
            )));
        }
    };
    Ok(value)
}

fn hcl_object_key(key: &str, object_key: &hcl::ObjectKey) -> Result<String, ConfigError> {
    match object_key {
        hcl::ObjectKey::Identifier(identifier) => Ok(identifier.as_str().to_owned()),
        hcl::ObjectKey::Expression(hcl::Expression::String(text)) => Ok(text.clone()),
        _ => Err(ConfigError::Invalid(format!(
            "the object keys in {key:?} must be names or quoted strings"
        ))),
    }
}

fn json_items(text: &str) -> Result<Vec<Item>, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|error| ConfigError::Syntax {
        format: "JSON",
        message: error.to_string(),
    })?;
    let Value::Object(object) = value else {
        return Err(ConfigError::Invalid(
            "a JSON config must be an object".into(),
        ));
    };
    let mut items = Vec::new();
    for (key, value) in object {
        if LABELLED_BLOCKS.contains(&key.as_str()) {
            items.extend(json_labelled_blocks(&key, value)?);
        } else if PLAIN_BLOCKS.contains(&key.as_str()) {
            items.push(json_block(&key, Vec::new(), value)?);
        } else {
            items.push(Item::Attribute { key, value });
        }
    }
    Ok(items)
}

/// `{"tcp": {...}}`, `[{"tcp": {...}}, ...]` or `{"tcp": [{...}, ...]}`.
fn json_labelled_blocks(identifier: &str, value: Value) -> Result<Vec<Item>, ConfigError> {
    let objects = match value {
        Value::Array(values) => values,
        other => vec![other],
    };
    let mut items = Vec::new();
    for object in objects {
        let Value::Object(by_label) = object else {
            return Err(expected_object(identifier));
        };
        for (label, body) in by_label {
            let bodies = match body {
                Value::Array(bodies) => bodies,
                other => vec![other],
            };
            for body in bodies {
                items.push(json_block(identifier, vec![label.clone()], body)?);
            }
        }
    }
    Ok(items)
}

fn json_block(identifier: &str, labels: Vec<String>, body: Value) -> Result<Item, ConfigError> {
    let Value::Object(body) = body else {
        return Err(expected_object(identifier));
    };
    Ok(Item::Block {
        identifier: identifier.to_owned(),
        labels,
        body: json_attributes(body),
    })
}

fn json_attributes(body: Map<String, Value>) -> Vec<Item> {
    body.into_iter()
        .map(|(key, value)| Item::Attribute { key, value })
        .collect()
}

fn expected_object(identifier: &str) -> ConfigError {
    ConfigError::Invalid(format!(
        "{identifier:?} must be an object such as {{\"{identifier}\": {{\"tcp\": {{...}}}}}}"
    ))
}

/// Finds the 1-based line where `key` first appears as an HCL key or a JSON member name, for
/// error messages.
pub(super) fn line_of(text: &str, key: &str) -> Option<usize> {
    let quoted = format!("\"{key}\"");
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let hcl_key = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '{', '"']));
            hcl_key || line.starts_with(&quoted)
        })
        .map(|index| index + 1)
}
