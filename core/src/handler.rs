//! [`Core`]: the request pipeline from a logical request to a response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use rand_core::CryptoRngCore;

use crate::acl::PolicyStore;
use crate::audit::AuditStatus;
use crate::barrier::Barrier;
use crate::error::Error;
use crate::mounts::MountTables;
use crate::replication::live::LiveStatus;
use crate::request::{Caller, Request, Response};
use crate::storage::{Guarded, Partition, StorageError, Transaction};
use crate::time::Timestamp;
use crate::token::TokenStore;

/// Settings that shape request handling.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// TTL given to tokens and leases that ask for none (`default_lease_ttl`).
    pub default_lease_ttl: Duration,
    /// Upper bound of every TTL (`max_lease_ttl`).
    pub max_lease_ttl: Duration,
    /// The version string reported by `sys/seal-status` and `sys/health`.
    pub version: String,
}

impl Default for CoreConfig {
    fn default() -> CoreConfig {
        // 768h, Vault's default for both.
        CoreConfig {
            default_lease_ttl: Duration::from_secs(2_764_800),
            max_lease_ttl: Duration::from_secs(2_764_800),
            version: String::from(env!("CARGO_PKG_VERSION")),
        }
    }
}

/// The inputs every handler receives besides the request: the time and the RNG.
pub struct Ctx<'a> {
    /// The current wall-clock time.
    pub now: Timestamp,
    /// The randomness for ids, keys and nonces.
    pub rng: &'a mut dyn CryptoRngCore,
}

impl<'a> Ctx<'a> {
    /// Bundles the time and the RNG.
    pub fn new(now: Timestamp, rng: &'a mut dyn CryptoRngCore) -> Ctx<'a> {
        Ctx { now, rng }
    }
}

/// The result of running a request.
#[derive(Debug)]
pub enum Outcome {
    /// The request finished with this response.
    Response(Response),
    /// The request failed with this error.
    Error(Error),
    /// The request tried to write a partition that is read-only in this transaction. The caller must
    /// drop the transaction's writes and rerun the request where the partition is writable: on
    /// this node's writer.
    ReadOnly(Partition),
    /// The request tried to write replicated data on a secondary. The caller must drop the
    /// transaction's writes and forward the request to the primary as this caller.
    Forward(Option<Caller>),
}

impl From<Result<Response, Error>> for Outcome {
    fn from(result: Result<Response, Error>) -> Outcome {
        match result {
            Ok(response) => Outcome::Response(response),
            Err(Error::Storage(StorageError::ReadOnly { partition })) => {
                Outcome::ReadOnly(partition)
            }
            Err(error) => Outcome::Error(error),
        }
    }
}

/// The secrets server's logic for one node: seal state, caches of the mount tables and
/// policies, and the request pipeline.
///
/// `Core` is shared by every request task; its caches use interior mutability. It performs no
/// IO: storage arrives as a [`Transaction`], time and randomness in a [`Ctx`].
pub struct Core {
    /// Request-handling settings.
    pub config: CoreConfig,
    /// Seal state and keyring.
    pub barrier: Barrier,
    /// The mount and auth tables.
    pub mounts: MountTables,
    /// Parsed ACL policies.
    pub policies: PolicyStore,
    /// Token store settings and helpers.
    pub tokens: TokenStore,
    /// Replication status that the replication driver reports.
    pub replication_live: LiveStatus,
    /// The audit devices the io layer failed to write to.
    pub audit_status: AuditStatus,
    replication_generation: AtomicU64,
    // The primary's API address while this node is a secondary, refreshed by `reload`.
    secondary_of: RwLock<Option<String>>,
}

impl Core {
    /// Makes a sealed core.
    pub fn new(config: CoreConfig) -> Core {
        Core {
            config,
            barrier: Barrier::new(),
            mounts: MountTables::new(),
            policies: PolicyStore::new(),
            tokens: TokenStore::new(),
            replication_live: LiveStatus::new(),
            audit_status: AuditStatus::default(),
            replication_generation: AtomicU64::new(0),
            secondary_of: RwLock::new(None),
        }
    }

    /// A counter that [`Core::reload`] raises whenever a replication key of the local partition
    /// may have changed, so the driver knows to read the replication role again.
    pub fn replication_generation(&self) -> u64 {
        self.replication_generation.load(Ordering::Acquire)
    }

    /// Runs one request: authentication, authorisation and the handler, all in `txn`.
    ///
    /// Token use accounting writes the local partition. Callers that must keep those writes
    /// even when the handler's writes are dropped call [`Core::authenticate`] and
    /// [`Core::dispatch`] separately, each in its own transaction.
    pub fn handle_request(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        txn: &mut dyn Transaction,
    ) -> Outcome {
        let caller = match self.authenticate(ctx, request, txn) {
            Ok(caller) => caller,
            Err(error) => return Outcome::from(Err(error)),
        };
        let result = self.dispatch(ctx, request, caller.as_ref(), txn);
        if result.as_ref().is_err_and(|error| self.is_forward(error)) {
            return Outcome::Forward(caller);
        }
        Outcome::from(result)
    }

    /// Checks the request's token and spends one of its uses, when it has a limit.
    ///
    /// Returns `None` for paths that need no token (`sys/init`, `sys/unseal`, logins, ...).
    /// Fails with 503 while sealed and 403 for a missing, unknown or expired token.
    pub fn authenticate(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        txn: &mut dyn Transaction,
    ) -> Result<Option<Caller>, Error> {
        if crate::sys::is_unauthenticated(&request.path)
            || crate::engines::is_unauthenticated(self, txn, &request.path)
        {
            return Ok(None);
        }
        if self.barrier.is_sealed() {
            return Err(Error::sealed());
        }
        if crate::sys::is_activation_unwrap(request) {
            return Ok(None);
        }
        crate::sys::check_wrapping_token(self, ctx, request, txn)?;
        crate::token::authenticate(self, ctx, request, txn).map(Some)
    }

    /// Authorises the caller for the request and runs its handler. With `X-Vault-Wrap-TTL`,
    /// a successful response is stored under a new wrapping token and only its `wrap_info`
    /// returned; errors are never wrapped.
    ///
    /// On a secondary a write to the shared partition fails the request with
    /// `StorageError::ReadOnly` for [`Partition::Shared`], which [`Core::is_forward`] recognises: only
    /// the primary writes replicated data, so the caller forwards the request there. The
    /// handler's own treatment of the error does not matter, because the guard remembers the
    /// attempt. On a demoted primary, which has no primary to forward to, the same write fails
    /// with 400.
    pub fn dispatch(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        caller: Option<&Caller>,
        txn: &mut dyn Transaction,
    ) -> Result<Response, Error> {
        let Some(primary) = self.secondary_primary_addr() else {
            return self.dispatch_unguarded(ctx, request, caller, txn);
        };
        let mut guarded = Guarded::new(txn, &[Partition::Shared]);
        let result = self.dispatch_unguarded(ctx, request, caller, &mut guarded);
        if guarded.refused() && primary.is_empty() {
            return Err(Error::bad_request(
                "this cluster is a demoted performance primary with no primary to forward to, \
                 so it does not accept writes to replicated data; promote it, or point it at \
                 the new primary with update-primary",
            ));
        }
        if guarded.refused() {
            return Err(Error::Storage(StorageError::ReadOnly {
                partition: Partition::Shared,
            }));
        }
        result
    }

    /// Returns whether `error` is the refusal [`Core::dispatch`] returns for a write to
    /// replicated data on a secondary, which the caller forwards to the primary. On any other
    /// node the same error only means the transaction was a read snapshot.
    pub fn is_forward(&self, error: &Error) -> bool {
        let shared_refused = matches!(
            error,
            Error::Storage(StorageError::ReadOnly {
                partition: Partition::Shared
            })
        );
        shared_refused && self.secondary_primary_addr().is_some()
    }

    /// The primary's API address while this node is a replication secondary, as of the last
    /// [`Core::reload`].
    pub fn secondary_primary_addr(&self) -> Option<String> {
        self.secondary_of
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the primary's API address as [`Core::reload`] does, so unit tests can make a core
    /// behave as a secondary without an activation.
    #[cfg(test)]
    pub(crate) fn set_secondary_primary_addr(&self, primary: Option<String>) {
        *self
            .secondary_of
            .write()
            .unwrap_or_else(PoisonError::into_inner) = primary;
    }

    pub(crate) fn dispatch_unguarded(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        caller: Option<&Caller>,
        txn: &mut dyn Transaction,
    ) -> Result<Response, Error> {
        crate::wrapping::requested_ttl(self, request)?;
        if let Some(caller) = caller {
            crate::acl::authorize(self, caller, request, txn)?;
        }
        self.finish(ctx, request, txn, |ctx, txn| {
            self.route(ctx, request, caller, txn)
        })
    }

    /// Runs `respond` and applies the post-processing that creates local state on the node
    /// the client talks to: response wrapping for `X-Vault-Wrap-TTL`. Local requests and
    /// responses forwarded from the primary both pass here, so every later step of this kind
    /// belongs here too. Errors are never wrapped.
    pub fn finish(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        txn: &mut dyn Transaction,
        respond: impl FnOnce(&mut Ctx<'_>, &mut dyn Transaction) -> Result<Response, Error>,
    ) -> Result<Response, Error> {
        match crate::wrapping::requested_ttl(self, request)? {
            None => respond(ctx, txn),
            Some(ttl) => crate::wrapping::wrap_response(self, ctx, request, ttl, txn, respond),
        }
    }

    pub(crate) fn route(
        &self,
        ctx: &mut Ctx<'_>,
        request: &Request,
        caller: Option<&Caller>,
        txn: &mut dyn Transaction,
    ) -> Result<Response, Error> {
        let path = request.path.as_str();
        if path == "sys" || path.starts_with("sys/") {
            return crate::sys::handle(self, ctx, request, caller, txn);
        }
        if path == "auth/token" || path.starts_with("auth/token/") {
            return crate::token::handle(self, ctx, request, caller, txn);
        }
        crate::engines::handle(self, ctx, request, caller, txn)
    }

    /// Returns when the earliest lease on this node ends, or `None` when there is none or the
    /// barrier is sealed. The io layer's timer sleeps until then and calls
    /// [`Core::handle_timeout`].
    pub fn poll_timeout(&self, txn: &dyn Transaction) -> Result<Option<Timestamp>, Error> {
        if self.barrier.is_sealed() {
            return Ok(None);
        }
        crate::lease::next_expiry(txn)
    }

    /// Revokes the leases that ended at or before `ctx.now`, with their tokens and the tokens'
    /// children, and returns how many it revoked. It revokes at most
    /// [`crate::lease::MAX_EXPIRED_PER_CALL`] per call, so the caller calls it again while
    /// [`Core::poll_timeout`] is not later than `now`. Writes only the local partition.
    pub fn handle_timeout(
        &self,
        ctx: &mut Ctx<'_>,
        txn: &mut dyn Transaction,
    ) -> Result<usize, Error> {
        if self.barrier.is_sealed() {
            return Ok(0);
        }
        let now = ctx.now;
        let mut view = self.barrier.view(txn, &mut *ctx.rng)?;
        crate::lease::expire_due(&mut view, now)
    }

    /// Refreshes the caches that the changed keys feed (mount tables, policies, keyring).
    /// `None` reloads everything, as after unsealing.
    pub fn reload(
        &self,
        txn: &dyn Transaction,
        changed: Option<&[(Partition, String)]>,
    ) -> Result<(), Error> {
        let role_changed = crate::replication::role::touches_role(changed);
        if role_changed {
            self.replication_generation.fetch_add(1, Ordering::AcqRel);
        }
        if self.barrier.is_sealed() {
            return Ok(());
        }
        self.barrier.reload(txn, changed)?;
        if role_changed {
            let primary = crate::replication::role::secondary_primary_addr(self, txn)?;
            *self
                .secondary_of
                .write()
                .unwrap_or_else(PoisonError::into_inner) = primary;
        }
        self.mounts.reload(self, txn, changed)?;
        self.policies.reload(self, txn, changed)?;
        Ok(())
    }
}
