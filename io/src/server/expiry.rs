//! The lease expiry timer: sleeps until the core's next lease expiry and has the writer revoke
//! what has ended.

use std::sync::Arc;
use std::time::Duration;

use coffer_core::storage::Storage;
use tokio::sync::watch;

use super::environment::Environment;
use super::node::Node;

/// The maximum time the timer sleeps before it reads the next expiry again. A token created while
/// the timer sleeps may end sooner than the expiry it last read, so this bounds how late such a
/// lease is revoked. An expired token is refused from its expiry instant on, whether or not the
/// timer has revoked it yet.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long the timer waits after a failed read or revocation before it tries again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Runs the timer until `stopped` turns true.
pub async fn run<S, E>(node: Arc<Node<S, E>>, mut stopped: watch::Receiver<bool>)
where
    S: Storage + 'static,
    E: Environment,
{
    loop {
        let wait = match tick(&node).await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(%error, retry_in_s = RETRY_DELAY.as_secs(), "lease expiry failed");
                RETRY_DELAY
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// Revokes the leases that have ended, if any, and returns how long to sleep next.
async fn tick<S, E>(node: &Node<S, E>) -> Result<Duration, coffer_core::Error>
where
    S: Storage + 'static,
    E: Environment,
{
    let next = node.storage().read(|txn| node.core().poll_timeout(txn))??;
    let Some(next) = next else {
        return Ok(MAX_SLEEP);
    };
    let now = node.environment().now();
    if next > now {
        return Ok(next.saturating_since(now).min(MAX_SLEEP));
    }
    let revoked = node.expire_leases().await?;
    if revoked > 0 {
        tracing::info!(revoked, "revoked expired leases");
    }
    Ok(Duration::ZERO)
}
