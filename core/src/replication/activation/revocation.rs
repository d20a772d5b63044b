//! The primary's list of active secondary certificates and of voided activation tokens.
//!
//! The caller stores the serialised [`SecondaryRegistry`] in `Partition::Local` through the
//! barrier, and consults it on every cluster handshake ([`SecondaryRegistry::is_active`]) and
//! every unwrap of an activation bundle ([`SecondaryRegistry::is_voided`]).
//!
//! Tokens are tracked by a caller-chosen reference, meant to be the wrapping token's accessor,
//! so that this list holds nothing that could unwrap a bundle.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The certificate a secondary is currently allowed to connect with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveCert {
    /// The certificate serial as lowercase hex.
    pub serial: String,
    /// When the certificate was issued.
    pub issued_at: Timestamp,
}

/// The replaced certificate and the unused activation tokens that carried it, which the
/// caller voids after a revocation or a re-issue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Voided {
    /// The serial that is no longer active, if the id had one.
    pub serial: Option<String>,
    /// The references of the unused activation tokens, now voided.
    pub tokens: Vec<String>,
}

/// A token reference with its expiry, after which it needs no tracking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TokenRecord {
    reference: String,
    expires_at: Timestamp,
}

/// Active secondary certificates by secondary id, unused activation tokens, and voided tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondaryRegistry {
    active: BTreeMap<String, ActiveCert>,
    unused_tokens: BTreeMap<String, Vec<TokenRecord>>,
    voided_tokens: BTreeMap<String, Timestamp>,
}

impl SecondaryRegistry {
    /// An empty registry.
    pub fn new() -> SecondaryRegistry {
        SecondaryRegistry::default()
    }

    /// Records a new certificate and activation token for `secondary_id`.
    ///
    /// The new serial replaces any earlier one, and the earlier unused tokens are voided
    /// because their bundles carry the replaced certificate. Returns what was replaced.
    pub fn issue(
        &mut self,
        secondary_id: &str,
        cert: ActiveCert,
        token_reference: &str,
        token_expires_at: Timestamp,
    ) -> Voided {
        let voided = self.void(secondary_id);
        self.active.insert(secondary_id.to_owned(), cert);
        let record = TokenRecord {
            reference: token_reference.to_owned(),
            expires_at: token_expires_at,
        };
        self.unused_tokens
            .insert(secondary_id.to_owned(), vec![record]);
        voided
    }

    /// Marks an activation token as used, so a later revocation no longer lists it.
    pub fn mark_used(&mut self, secondary_id: &str, token_reference: &str) {
        if let Some(records) = self.unused_tokens.get_mut(secondary_id) {
            records.retain(|record| record.reference != token_reference);
            if records.is_empty() {
                self.unused_tokens.remove(secondary_id);
            }
        }
    }

    /// Revokes `secondary_id`: its certificate stops being active and its unused tokens are
    /// voided. Returns what the caller must void and which sessions to close (by serial).
    pub fn revoke(&mut self, secondary_id: &str) -> Voided {
        self.void(secondary_id)
    }

    /// Whether `serial` is the active certificate of `secondary_id`.
    pub fn is_active(&self, secondary_id: &str, serial: &str) -> bool {
        self.active
            .get(secondary_id)
            .is_some_and(|cert| cert.serial == serial)
    }

    /// Whether the activation token with this reference was voided.
    pub fn is_voided(&self, token_reference: &str) -> bool {
        self.voided_tokens.contains_key(token_reference)
    }

    /// The active certificate of `secondary_id`.
    pub fn active_cert(&self, secondary_id: &str) -> Option<&ActiveCert> {
        self.active.get(secondary_id)
    }

    /// The ids of all secondaries with an active certificate, in order.
    pub fn secondary_ids(&self) -> BTreeSet<&str> {
        self.active.keys().map(String::as_str).collect()
    }

    /// Forgets tokens that expired before `now`, which could no longer be unwrapped anyway.
    pub fn prune(&mut self, now: Timestamp) {
        self.voided_tokens
            .retain(|_, expires_at| *expires_at >= now);
        for records in self.unused_tokens.values_mut() {
            records.retain(|record| record.expires_at >= now);
        }
        self.unused_tokens.retain(|_, records| !records.is_empty());
    }

    fn void(&mut self, secondary_id: &str) -> Voided {
        let serial = self.active.remove(secondary_id).map(|cert| cert.serial);
        let records = self.unused_tokens.remove(secondary_id).unwrap_or_default();
        let mut tokens = Vec::with_capacity(records.len());
        for record in records {
            self.voided_tokens
                .insert(record.reference.clone(), record.expires_at);
            tokens.push(record.reference);
        }
        Voided { serial, tokens }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
    const EXPIRY: Timestamp = Timestamp::from_secs(1_800_001_800);

    fn cert(serial: &str) -> ActiveCert {
        ActiveCert {
            serial: serial.to_owned(),
            issued_at: NOW,
        }
    }

    #[test]
    fn issued_serial_is_active() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        assert!(registry.is_active("east", "aa"));
        assert!(!registry.is_active("east", "bb"));
        assert!(!registry.is_active("west", "aa"));
    }

    #[test]
    fn revoking_makes_serial_inactive_and_voids_unused_token() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        let voided = registry.revoke("east");
        assert_eq!(voided.serial.as_deref(), Some("aa"));
        assert_eq!(voided.tokens, vec!["accessor-1".to_owned()]);
        assert!(!registry.is_active("east", "aa"));
        assert!(registry.is_voided("accessor-1"));
    }

    #[test]
    fn reissued_serial_is_active() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        registry.revoke("east");
        let replaced = registry.issue("east", cert("bb"), "accessor-2", EXPIRY);
        assert_eq!(replaced, Voided::default());
        assert!(registry.is_active("east", "bb"));
        assert!(!registry.is_active("east", "aa"));
        assert!(!registry.is_voided("accessor-2"));
    }

    #[test]
    fn new_token_for_same_id_replaces_serial() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        let replaced = registry.issue("east", cert("bb"), "accessor-2", EXPIRY);
        assert_eq!(replaced.serial.as_deref(), Some("aa"));
        assert_eq!(replaced.tokens, vec!["accessor-1".to_owned()]);
        assert!(registry.is_active("east", "bb"));
        assert!(!registry.is_active("east", "aa"));
        assert!(registry.is_voided("accessor-1"));
    }

    #[test]
    fn used_token_is_not_voided_by_revocation() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        registry.mark_used("east", "accessor-1");
        let voided = registry.revoke("east");
        assert!(voided.tokens.is_empty());
        assert!(!registry.is_voided("accessor-1"));
    }

    #[test]
    fn revoking_unknown_id_voids_nothing() {
        let mut registry = SecondaryRegistry::new();
        assert_eq!(registry.revoke("nobody"), Voided::default());
    }

    #[test]
    fn prune_forgets_expired_tokens() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        registry.revoke("east");
        registry.prune(EXPIRY);
        assert!(registry.is_voided("accessor-1"));
        registry.prune(Timestamp::from_secs(EXPIRY.as_secs() + 1));
        assert!(!registry.is_voided("accessor-1"));
    }

    #[test]
    fn registry_serde_round_trip() {
        let mut registry = SecondaryRegistry::new();
        registry.issue("east", cert("aa"), "accessor-1", EXPIRY);
        registry.issue("west", cert("cc"), "accessor-3", EXPIRY);
        registry.revoke("west");
        let json = serde_json::to_string(&registry).unwrap();
        let back: SecondaryRegistry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, registry);
        assert!(back.is_active("east", "aa"));
        assert!(back.is_voided("accessor-3"));
    }
}
