//! The `barrier_tokens` target: a [`Core`] over [`MemStorage`] driven by a sequence of seal,
//! unseal and token requests, run the way the server runs them.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use coffer_core::request::{Operation, Request, Response};
use coffer_core::storage::{MemStorage, ReadOnly, Storage};
use coffer_core::{Core, CoreConfig, Ctx, Outcome, Timestamp};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Map, Value, json};

const MAX_STEPS: usize = 48;

/// A value taken from those issued so far, or made up.
#[derive(Arbitrary, Debug)]
enum Pick {
    Issued(u8),
    Garbage(String),
    Absent,
}

/// One request, or a clock move.
#[derive(Arbitrary, Debug)]
enum Step {
    Init {
        shares: u8,
        threshold: u8,
    },
    Unseal {
        share: Pick,
        reset: bool,
    },
    Seal {
        token: Pick,
    },
    SealStatus,
    Create {
        token: Pick,
        ttl: Option<u16>,
        uses: u8,
        orphan: bool,
    },
    Lookup {
        token: Pick,
        target: Pick,
    },
    LookupSelf {
        token: Pick,
    },
    Revoke {
        token: Pick,
        target: Pick,
    },
    Renew {
        token: Pick,
        target: Pick,
        increment: Option<u16>,
    },
    Advance {
        secs: u32,
    },
}

struct Node {
    core: Core,
    storage: MemStorage,
    rng: ChaCha20Rng,
    now: Timestamp,
    shares: Vec<String>,
    tokens: Vec<String>,
}

impl Node {
    fn pick(list: &[String], pick: Pick) -> Option<String> {
        match pick {
            Pick::Issued(index) if !list.is_empty() => {
                Some(list[usize::from(index) % list.len()].clone())
            }
            Pick::Issued(_) | Pick::Absent => None,
            Pick::Garbage(text) => Some(text),
        }
    }

    fn request(&mut self, operation: Operation, path: &str, token: Pick, data: Value) {
        let mut request = Request::new(operation, path).with_data(data);
        if let Some(token) = Node::pick(&self.tokens, token) {
            request = request.with_token(token);
        }
        match self.run(&request) {
            Some(Response::Raw { body, .. }) => self.collect(&body),
            Some(Response::Logical(logical)) => {
                if let Some(auth) = &logical.auth {
                    self.tokens.push(auth.client_token.expose().to_owned());
                }
            }
            _ => {}
        }
    }

    fn collect(&mut self, body: &Value) {
        if let Some(keys) = body.get("keys").and_then(Value::as_array) {
            self.shares = keys
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        if let Some(root) = body.get("root_token").and_then(Value::as_str) {
            self.tokens.push(root.to_owned());
        }
    }

    /// First on a read-only snapshot, then on the writer when the request needs to write.
    fn run(&mut self, request: &Request) -> Option<Response> {
        let core = &self.core;
        let mut ctx = Ctx::new(self.now, &mut self.rng);
        let first = self
            .storage
            .read(|txn| core.handle_request(&mut ctx, request, &mut ReadOnly(txn)))
            .expect("MemStorage opens a read transaction");
        let outcome = match first {
            Outcome::ReadOnly(_) => self
                .storage
                .write(|txn| {
                    Ok::<_, coffer_core::storage::StorageError>(
                        core.handle_request(&mut ctx, request, txn),
                    )
                })
                .expect("MemStorage commits"),
            other => other,
        };
        match outcome {
            Outcome::Response(response) => Some(response),
            Outcome::Error(_) => None,
            Outcome::ReadOnly(partition) => {
                panic!("a write transaction rejected a write to {partition:?}")
            }
            Outcome::Forward(_) => panic!("a standalone node forwarded a request"),
        }
    }
}

fn with_target(target: Option<String>) -> Map<String, Value> {
    let mut data = Map::new();
    if let Some(target) = target {
        data.insert("token".into(), Value::from(target));
    }
    data
}

/// Runs the requests the input encodes, checking the seal invariants after each one.
pub fn barrier_tokens(data: &[u8]) {
    let Ok(steps) = Vec::<Step>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut node = Node {
        core: Core::new(CoreConfig::default()),
        storage: MemStorage::new(),
        rng: ChaCha20Rng::seed_from_u64(1),
        now: Timestamp::from_secs(1_700_000_000),
        shares: Vec::new(),
        tokens: Vec::new(),
    };
    for step in steps.into_iter().take(MAX_STEPS) {
        let update = Operation::Update;
        match step {
            Step::Init { shares, threshold } => node.request(
                update,
                "sys/init",
                Pick::Absent,
                json!({"secret_shares": shares % 8, "secret_threshold": threshold % 8}),
            ),
            Step::Unseal { share, reset } => {
                let key = Node::pick(&node.shares, share).unwrap_or_default();
                node.request(
                    update,
                    "sys/unseal",
                    Pick::Absent,
                    json!({"key": key, "reset": reset}),
                );
            }
            Step::Seal { token } => node.request(update, "sys/seal", token, json!({})),
            Step::SealStatus => {
                node.request(Operation::Read, "sys/seal-status", Pick::Absent, json!({}));
            }
            Step::Create {
                token,
                ttl,
                uses,
                orphan,
            } => {
                let mut data = Map::new();
                if let Some(ttl) = ttl {
                    data.insert("ttl".into(), Value::from(format!("{ttl}s")));
                }
                data.insert("num_uses".into(), Value::from(uses % 4));
                data.insert("no_parent".into(), Value::from(orphan));
                node.request(update, "auth/token/create", token, Value::Object(data));
            }
            Step::Lookup { token, target } => {
                let data = with_target(Node::pick(&node.tokens, target));
                node.request(update, "auth/token/lookup", token, Value::Object(data));
            }
            Step::LookupSelf { token } => {
                let path = "auth/token/lookup-self";
                node.request(Operation::Read, path, token, json!({}));
            }
            Step::Revoke { token, target } => {
                let data = with_target(Node::pick(&node.tokens, target));
                node.request(update, "auth/token/revoke", token, Value::Object(data));
            }
            Step::Renew {
                token,
                target,
                increment,
            } => {
                let mut data = with_target(Node::pick(&node.tokens, target));
                if let Some(increment) = increment {
                    data.insert("increment".into(), Value::from(format!("{increment}s")));
                }
                node.request(update, "auth/token/renew", token, Value::Object(data));
            }
            Step::Advance { secs } => {
                node.now = node
                    .now
                    .saturating_add(Duration::from_secs(u64::from(secs)));
            }
        }
        if let Err(error) = node.core.barrier.validate() {
            panic!("seal invariant broken: {error}");
        }
    }
}
