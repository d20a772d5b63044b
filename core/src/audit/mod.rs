//! Audit devices and the entries they record.
//!
//! The device table lives at `core/audit` (shared, replicated) and `core/local-audit` (local,
//! for devices enabled with `local=true`), behind the barrier like the mount tables. Each
//! device keeps its own HMAC key there, so a hash in one device's file cannot be matched
//! against another device's.
//!
//! The core builds each entry as one JSON line, in Vault's audit format, with every sensitive
//! value replaced by `hmac-sha256:<hex>`. The io layer writes the lines to the device files.
//! The order for one request is: [`Core::audit_begin`] before the request runs,
//! [`AuditRun::request_lines`] written, then [`AuditRun::response_lines`] written once the
//! response exists and before it is sent.

mod device;
mod entry;

#[cfg(test)]
mod tests;

pub use device::{AuditDevice, HmacKey};
pub(crate) use device::{find, list as list_devices, save_devices};
pub use entry::{AuditAuth, AuditLine};

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use crate::Core;
use crate::error::Error;
use crate::handler::Ctx;
use crate::request::{Request, Response};
use crate::storage::Transaction;
use crate::time::Timestamp;

/// The audit devices this node failed to write to, by device path, with the reason. The io layer
/// sets it and `sys/health` reports it.
#[derive(Debug, Default)]
pub struct AuditStatus {
    failures: Mutex<BTreeMap<String, String>>,
}

impl AuditStatus {
    /// Records that writing to `device` failed for `reason`, or succeeded again for `None`.
    pub fn set(&self, device: &str, reason: Option<String>) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match reason {
            Some(reason) => failures.insert(device.to_owned(), reason),
            None => failures.remove(device),
        };
    }

    /// Forgets every device that is no longer enabled.
    pub fn retain(&self, enabled: &[AuditDevice]) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.retain(|path, _| enabled.iter().any(|device| &device.path == path));
    }

    /// Returns the failing devices and their reasons.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Paths Vault never audits: the seal and health endpoints that run outside its router.
const UNAUDITED_PATHS: &[&str] = &[
    "sys/init",
    "sys/seal-status",
    "sys/seal",
    "sys/unseal",
    "sys/leader",
    "sys/health",
];

/// Returns whether requests to `path` are recorded by the audit devices.
pub fn is_audited(path: &str) -> bool {
    !UNAUDITED_PATHS.contains(&path.trim_end_matches('/'))
}

/// The audit devices and the caller's token details for one request, read before it runs so the
/// response entry names the same caller even when the request revokes its own token.
#[derive(Debug)]
pub struct AuditRun {
    devices: Vec<AuditDevice>,
    auth: Option<AuditAuth>,
}

impl AuditRun {
    /// Returns the enabled devices, shared ones first.
    pub fn devices(&self) -> &[AuditDevice] {
        &self.devices
    }

    /// Builds the request entry, one line per device.
    pub fn request_lines(&self, now: Timestamp, request: &Request) -> Vec<AuditLine> {
        self.devices
            .iter()
            .map(|device| entry::request_line(device, now, request, self.auth.as_ref()))
            .collect()
    }

    /// Builds the response entry, one line per device.
    pub fn response_lines(
        &self,
        now: Timestamp,
        request: &Request,
        result: &Result<Response, Error>,
    ) -> Vec<AuditLine> {
        self.devices
            .iter()
            .map(|device| entry::response_line(device, now, request, self.auth.as_ref(), result))
            .collect()
    }
}

impl Core {
    /// Lists the enabled audit devices, or none while sealed. The io layer opens their files
    /// with it, for every request, so `sys/health` reports a device it cannot open.
    pub fn audit_devices(&self, txn: &dyn Transaction) -> Result<Vec<AuditDevice>, Error> {
        if self.barrier.is_sealed() {
            return Ok(Vec::new());
        }
        device::list(self, txn)
    }

    /// Returns whether the request's token is valid and its policies allow the request, as the
    /// ACL check would decide. The io layer calls it before it opens a file named by a
    /// `sys/audit/<path>` enable request, so an unauthorised caller cannot make the server
    /// create files. Reads only; a token use is not spent here.
    pub fn may_run(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        txn: &mut dyn Transaction,
    ) -> Result<bool, Error> {
        let Some(token) = &request.token else {
            return Ok(false);
        };
        if self.barrier.is_sealed() {
            return Ok(false);
        }
        let now = ctx.now;
        let view = self.barrier.view(txn, &mut *ctx.rng)?;
        let Some(caller) = crate::token::peek_caller(&view, token.expose(), now)? else {
            return Ok(false);
        };
        match crate::acl::authorize(self, &caller, request, txn) {
            Ok(()) => Ok(true),
            Err(Error::Api { status: 403, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Reads what the entries of `request` need: the devices and the caller's token. Returns
    /// `None` when the path is never audited, no device is enabled or the barrier is sealed.
    /// Reads only; a token use is not spent here.
    pub fn audit_begin(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        txn: &mut dyn Transaction,
    ) -> Result<Option<AuditRun>, Error> {
        if !is_audited(&request.path) {
            return Ok(None);
        }
        let devices = self.audit_devices(txn)?;
        if devices.is_empty() {
            return Ok(None);
        }
        let auth = entry::lookup_auth(self, ctx, request, txn)?;
        Ok(Some(AuditRun { devices, auth }))
    }
}
