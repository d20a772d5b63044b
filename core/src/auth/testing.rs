//! Test helpers: a node with the built-in mount tables and an auth method enabled, driven
//! through the whole request pipeline.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::error::Error;
use crate::handler::Outcome;
use crate::request::{Operation, Request, Response};
use crate::storage::Storage;
use crate::token::testing::Node;

/// A node with the auth method `kind` enabled at `auth/<path>/`.
pub(crate) fn node_with(kind: &str, path: &str, local: bool) -> Node {
    let mut node = Node::new();
    let (core, rng, now) = (&node.core, &mut node.rng, node.now);
    node.storage
        .write(|txn| {
            let mut view = core.barrier.view(txn, rng)?;
            crate::mounts::initialize(core, &mut view, now)
        })
        .unwrap();
    let body = json!({"type": kind, "local": local});
    root(
        &mut node,
        Operation::Update,
        &format!("sys/auth/{path}"),
        body,
    );
    node
}

/// Runs a request with the root token; it must succeed.
pub(crate) fn root(node: &mut Node, operation: Operation, path: &str, body: Value) -> Response {
    let request = node.root_request(operation, path, body);
    node.ok(request)
}

/// Runs a request with the root token and returns its result.
pub(crate) fn try_root(
    node: &mut Node,
    operation: Operation,
    path: &str,
    body: Value,
) -> Result<Response, Error> {
    let request = node.root_request(operation, path, body);
    result(node.run(&request))
}

/// Runs a request without a token, from `remote_addr`.
pub(crate) fn anonymous(
    node: &mut Node,
    path: &str,
    body: Value,
    remote_addr: Option<IpAddr>,
) -> Result<Response, Error> {
    let mut request = Request::new(Operation::Update, path).with_data(body);
    request.remote_addr = remote_addr;
    result(node.run(&request))
}

/// Runs a request with `token`.
pub(crate) fn with_token(
    node: &mut Node,
    token: &str,
    operation: Operation,
    path: &str,
    body: Value,
) -> Result<Response, Error> {
    let request = Request::new(operation, path)
        .with_data(body)
        .with_token(token);
    result(node.run(&request))
}

/// The status and messages of a failed request.
pub(crate) fn failure(result: Result<Response, Error>) -> (u16, Vec<String>) {
    match result {
        Err(Error::Api { status, messages }) => (status, messages),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn result(outcome: Outcome) -> Result<Response, Error> {
    match outcome {
        Outcome::Response(response) => Ok(response),
        Outcome::Error(error) => Err(error),
        Outcome::ReadOnly(partition) => panic!("the writer refused a write to {partition:?}"),
        Outcome::Forward(_) => panic!("a test node is never a secondary"),
    }
}
