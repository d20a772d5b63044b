//! `sys/generate-root/*`: a new root token from a threshold of key shares.
//!
//! The client starts an attempt and gets (or supplies) a one-time pad. When the threshold-th
//! share arrives and the shares rebuild the root key, a root token is created and returned
//! XOR-ed with the pad, in unpadded base64, so only the holder of the pad can read it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::SecureView;
use super::params;
use super::seal::{Progress, SealConfig, SealState, load_keyring};
use super::shamir::{combine, decode_share};
use super::unseal::require_config;
use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::ids;
use crate::request::Secret;
use crate::storage::Transaction;

/// Length of the one-time pad: a root token is `hvs.` and 24 base62 characters.
pub const OTP_LENGTH: usize = 28;

/// A root token generation in progress.
#[derive(Clone)]
pub struct GenerateRoot {
    otp: Secret,
    progress: Progress,
}

impl fmt::Debug for GenerateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRoot")
            .field("nonce", &self.progress.nonce)
            .field("progress", &self.progress.len())
            .finish_non_exhaustive()
    }
}

/// Handles `GET sys/generate-root/attempt`.
pub fn status(core: &Core, txn: &dyn Transaction) -> Result<Value, Error> {
    let config = require_config(txn)?;
    let state = core.barrier.seal_state();
    Ok(status_body(state.generate_root.as_ref(), &config))
}

/// Handles `PUT sys/generate-root/attempt`: starts an attempt with the client's `otp`, or with
/// a generated one that the reply carries this once.
pub fn start(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &dyn Transaction,
) -> Result<Value, Error> {
    let config = require_config(txn)?;
    core.barrier.keyring()?;
    if params::string(data, "pgp_key")?.is_some() {
        return Err(Error::bad_request("PGP keys are not supported"));
    }
    let supplied = params::string(data, "otp")?;
    if let Some(otp) = supplied {
        if otp.len() != OTP_LENGTH {
            return Err(Error::bad_request(format!(
                "otp must be {OTP_LENGTH} characters long, got {}",
                otp.len()
            )));
        }
    }
    let mut state = core.barrier.seal_state();
    if state.generate_root.is_some() {
        return Err(Error::bad_request(
            "root generation already in progress; cancel it with DELETE sys/generate-root/attempt",
        ));
    }
    let otp = match supplied {
        Some(otp) => Secret::new(otp),
        None => Secret::new(ids::base62(ctx.rng, OTP_LENGTH)),
    };
    let attempt = GenerateRoot {
        otp: otp.clone(),
        progress: Progress::new(ids::uuid(ctx.rng)),
    };
    let mut body = status_body(Some(&attempt), &config);
    if supplied.is_none() {
        body["otp"] = Value::from(otp.expose());
    }
    state.generate_root = Some(attempt);
    Ok(body)
}

/// Handles `DELETE sys/generate-root/attempt`.
pub fn cancel(core: &Core) {
    core.barrier.seal_state().generate_root = None;
}

/// Handles `PUT sys/generate-root/update`: adds a share and, at the threshold, creates the
/// root token.
///
/// The token is written before the attempt's in-memory state changes, so a read-only first
/// run that must be rerun on the writer leaves the attempt as it was.
pub fn update(
    core: &Core,
    ctx: &mut Ctx<'_>,
    data: &Map<String, Value>,
    txn: &mut dyn Transaction,
) -> Result<Value, Error> {
    let config = require_config(txn)?;
    let keyring = core.barrier.keyring()?;
    let (key, nonce) = key_and_nonce(data)?;
    let share = decode_share(key)?;
    let mut state = core.barrier.seal_state();
    let mut attempt = current_attempt(&state, nonce)?;
    attempt.progress.add(share)?;
    if attempt.progress.len() < usize::from(config.secret_threshold) {
        let body = status_body(Some(&attempt), &config);
        state.generate_root = Some(attempt);
        return Ok(body);
    }
    if let Err(error) = check_root_key(&attempt, txn) {
        reset_progress(&mut state);
        return Err(error);
    }
    let mut view = SecureView::new(txn, keyring, ctx.rng);
    let token = crate::token::create_root_token(core, &mut view, ctx.now)?;
    let encoded = encode_token(&token, &attempt.otp)?;
    state.generate_root = None;
    tracing::info!("root token generated from key shares");
    let mut body = status_body(Some(&attempt), &config);
    body["complete"] = Value::Bool(true);
    body["encoded_token"] = Value::from(encoded.as_str());
    body["encoded_root_token"] = Value::from(encoded.as_str());
    Ok(body)
}

/// Reads `key` and `nonce` from an update body.
pub(crate) fn key_and_nonce(data: &Map<String, Value>) -> Result<(&str, &str), Error> {
    let key = params::string(data, "key")?
        .ok_or_else(|| Error::bad_request("missing required parameter key"))?;
    let nonce = params::string(data, "nonce")?
        .ok_or_else(|| Error::bad_request("missing required parameter nonce"))?;
    Ok((key, nonce))
}

fn current_attempt(state: &SealState, nonce: &str) -> Result<GenerateRoot, Error> {
    let attempt = state
        .generate_root
        .as_ref()
        .ok_or_else(|| Error::bad_request("no root generation in progress"))?;
    if attempt.progress.nonce != nonce {
        return Err(Error::bad_request(format!(
            "incorrect nonce {nonce:?}: the attempt in progress has nonce {:?}",
            attempt.progress.nonce
        )));
    }
    Ok(attempt.clone())
}

fn check_root_key(attempt: &GenerateRoot, txn: &dyn Transaction) -> Result<(), Error> {
    let root_key = combine(attempt.progress.shares())?;
    load_keyring(txn, &root_key)?;
    Ok(())
}

fn reset_progress(state: &mut SealState) {
    if let Some(attempt) = state.generate_root.as_mut() {
        attempt.progress = Progress::new(attempt.progress.nonce.clone());
    }
}

/// The token XOR the pad, in unpadded standard base64.
fn encode_token(token: &Secret, otp: &Secret) -> Result<Zeroizing<String>, Error> {
    let token = token.expose().as_bytes();
    let otp = otp.expose().as_bytes();
    if token.len() != otp.len() {
        return Err(Error::internal(format!(
            "the new root token is {} characters, but the one-time pad is {}",
            token.len(),
            otp.len()
        )));
    }
    let mixed: Zeroizing<Vec<u8>> =
        Zeroizing::new(token.iter().zip(otp).map(|(a, b)| a ^ b).collect());
    Ok(Zeroizing::new(STANDARD_NO_PAD.encode(&*mixed)))
}

fn status_body(attempt: Option<&GenerateRoot>, config: &SealConfig) -> Value {
    json!({
        "started": attempt.is_some(),
        "nonce": attempt.map_or("", |attempt| attempt.progress.nonce.as_str()),
        "progress": attempt.map_or(0, |attempt| attempt.progress.len()),
        "required": config.secret_threshold,
        "encoded_token": "",
        "encoded_root_token": "",
        "pgp_fingerprint": "",
        "otp_length": OTP_LENGTH,
        "complete": false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::barrier::testing::{TestNode, body_of, status_of};
    use crate::request::{Operation, Request};

    fn attempt(node: &mut TestNode, body: Value) -> Result<Value, Error> {
        let request = Request::new(Operation::Update, "sys/generate-root/attempt").with_data(body);
        node.request(request).map(body_of)
    }

    fn update(node: &mut TestNode, key: &str, nonce: &str) -> Result<Value, Error> {
        let request = Request::new(Operation::Update, "sys/generate-root/update")
            .with_data(json!({"key": key, "nonce": nonce}));
        node.request(request).map(body_of)
    }

    fn decode(encoded: &str, otp: &str) -> String {
        let bytes = STANDARD_NO_PAD.decode(encoded).unwrap();
        let plain: Vec<u8> = bytes
            .iter()
            .zip(otp.as_bytes())
            .map(|(a, b)| a ^ b)
            .collect();
        String::from_utf8(plain).unwrap()
    }

    #[test]
    fn idle_status_reports_required_shares() {
        let mut node = TestNode::new();
        node.init_and_unseal(5, 3);
        let request = Request::new(Operation::Read, "sys/generate-root/attempt");
        let body = body_of(node.request(request).unwrap());
        assert_eq!(
            body,
            json!({"started": false, "nonce": "", "progress": 0, "required": 3,
                   "encoded_token": "", "encoded_root_token": "", "pgp_fingerprint": "",
                   "otp_length": 28, "complete": false})
        );
    }

    #[test]
    fn start_generates_otp_once() {
        let mut node = TestNode::new();
        node.init_and_unseal(5, 3);
        let body = attempt(&mut node, json!({})).unwrap();
        assert_eq!(body["started"], json!(true));
        let otp = body["otp"].as_str().unwrap();
        assert_eq!(otp.len(), OTP_LENGTH);
        assert!(otp.bytes().all(|byte| byte.is_ascii_alphanumeric()));
        let status = body_of(
            node.request(Request::new(Operation::Read, "sys/generate-root/attempt"))
                .unwrap(),
        );
        assert!(status.get("otp").is_none());
        assert_eq!(status["nonce"], body["nonce"]);
    }

    #[test]
    fn supplied_otp_is_checked_and_not_echoed() {
        let mut node = TestNode::new();
        node.init_and_unseal(5, 3);
        let error = attempt(&mut node, json!({"otp": "short"})).unwrap_err();
        assert_eq!(
            error,
            Error::bad_request("otp must be 28 characters long, got 5")
        );
        let body = attempt(&mut node, json!({"otp": "a".repeat(28)})).unwrap();
        assert!(body.get("otp").is_none());
        let again = attempt(&mut node, json!({})).unwrap_err();
        assert!(again.to_string().contains("already in progress"), "{again}");
    }

    #[test]
    fn cancel_ends_attempt() {
        let mut node = TestNode::new();
        node.init_and_unseal(5, 3);
        attempt(&mut node, json!({})).unwrap();
        let delete = Request::new(Operation::Delete, "sys/generate-root/attempt");
        assert_eq!(status_of(&node.request(delete).unwrap()), 204);
        let status = body_of(
            node.request(Request::new(Operation::Read, "sys/generate-root/attempt"))
                .unwrap(),
        );
        assert_eq!(status["started"], json!(false));
    }

    #[test]
    fn wrong_nonce_is_rejected() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(5, 3);
        attempt(&mut node, json!({})).unwrap();
        let error = update(&mut node, &keys[0], "not-the-nonce").unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("incorrect nonce"), "{error}");
    }

    #[test]
    fn update_without_attempt_is_rejected() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(5, 3);
        let error = update(&mut node, &keys[0], "nonce").unwrap_err();
        assert_eq!(error, Error::bad_request("no root generation in progress"));
    }

    #[test]
    fn foreign_keys_reset_progress() {
        let mut node = TestNode::new();
        node.init_and_unseal(3, 2);
        let mut other = TestNode::new();
        other.rng = rand_core::SeedableRng::seed_from_u64(99);
        let foreign = other.init_without_token(3, 2);
        let started = attempt(&mut node, json!({})).unwrap();
        let nonce = started["nonce"].as_str().unwrap().to_owned();
        assert_eq!(
            update(&mut node, &foreign[0], &nonce).unwrap()["progress"],
            json!(1)
        );
        let error = update(&mut node, &foreign[1], &nonce).unwrap_err();
        assert!(error.to_string().contains("do not rebuild"), "{error}");
        let status = body_of(
            node.request(Request::new(Operation::Read, "sys/generate-root/attempt"))
                .unwrap(),
        );
        assert_eq!(status["progress"], json!(0));
        assert_eq!(status["started"], json!(true));
    }

    #[test]
    fn generate_root_flow_decodes_to_token() {
        let mut node = TestNode::new();
        let keys = node.init_and_unseal(5, 3);
        let started = attempt(&mut node, json!({})).unwrap();
        let otp = started["otp"].as_str().unwrap().to_owned();
        let nonce = started["nonce"].as_str().unwrap().to_owned();
        assert_eq!(
            update(&mut node, &keys[3], &nonce).unwrap()["progress"],
            json!(1)
        );
        assert_eq!(
            update(&mut node, &keys[1], &nonce).unwrap()["progress"],
            json!(2)
        );
        let done = update(&mut node, &keys[4], &nonce).unwrap();
        assert_eq!(done["complete"], json!(true));
        assert_eq!(done["encoded_token"], done["encoded_root_token"]);
        let token = decode(done["encoded_root_token"].as_str().unwrap(), &otp);
        assert!(token.starts_with("hvs."), "token prefix");
        assert_eq!(token.len(), OTP_LENGTH);
    }

    #[test]
    fn encoded_token_is_token_xor_otp() {
        let token = Secret::new("hvs.abcdefghijklmnopqrstuvwx");
        let otp = Secret::new("0123456789ABCDEFGHIJKLMNOPQR");
        let encoded = encode_token(&token, &otp).unwrap();
        assert!(!encoded.contains('='));
        assert_eq!(decode(&encoded, otp.expose()), token.expose());
        let short = Secret::new("hvs.short");
        assert_eq!(encode_token(&short, &otp).unwrap_err().status(), 500);
    }
}
