//! Failover during a randomized run, and the current primary that the workload follows.
//!
//! A planned failover demotes the primary, promotes a secondary and moves the other nodes to it
//! with update-primary. An unplanned one isolates the primary and promotes a secondary with
//! `force`. The old primary is then fenced by a demote and moved to the new one.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::harness::{Control, PRIMARY};
use crate::set::{ReplicaSet, expect_ok, wait_converged_to};

/// How often a failover step is tried again while its node is down, sealed or cut off.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How long a planned failover waits for the new primary to catch up before the demote, as an
/// operator would check the secondary's status first.
const CATCH_UP: Duration = Duration::from_secs(10);

/// How many times a failover step is tried. Every fault of a run ends within its faulty phase,
/// so a step that fails for this long has a cause other than an injected fault.
const RETRIES: usize = 60;

/// The current primary of a run, and the promotions that changed it.
#[derive(Clone, Debug)]
pub struct Leadership(Rc<RefCell<LeadershipState>>);

#[derive(Debug)]
struct LeadershipState {
    leader: String,
    promotions: Vec<Promotion>,
}

/// One completed failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The primary before the failover.
    pub old: String,
    /// The promoted secondary.
    pub new: String,
    /// The WAL index where the new primary's epoch starts. What the old primary acknowledged
    /// past it is not in the new primary's history.
    pub fork: u64,
}

impl Default for Leadership {
    fn default() -> Leadership {
        Leadership(Rc::new(RefCell::new(LeadershipState {
            leader: PRIMARY.to_owned(),
            promotions: Vec::new(),
        })))
    }
}

impl Leadership {
    /// Returns the host the workload writes to.
    pub fn leader(&self) -> String {
        self.0.borrow().leader.clone()
    }

    /// Returns every node of the set but the current primary.
    pub fn followers(&self, control: &Control) -> Vec<String> {
        let leader = self.leader();
        all_nodes(control)
            .into_iter()
            .filter(|host| *host != leader)
            .collect()
    }

    /// Returns the completed failovers, oldest first.
    pub fn promotions(&self) -> Vec<Promotion> {
        self.0.borrow().promotions.clone()
    }

    fn switch(&self, promotion: Promotion) {
        tracing::info!(old = %promotion.old, new = %promotion.new, fork = promotion.fork, "the workload follows the new primary");
        let mut state = self.0.borrow_mut();
        state.leader = promotion.new.clone();
        state.promotions.push(promotion);
    }
}

/// Returns the primary host and every secondary host.
pub fn all_nodes(control: &Control) -> Vec<String> {
    let mut hosts = vec![PRIMARY.to_owned()];
    hosts.extend(control.secondaries());
    hosts
}

/// Moves the primary role from the current primary to `new`.
///
/// A planned failover demotes the primary first, so the promotion waits for everything it
/// wrote. An unplanned one cuts the primary off from every other node, promotes `new` with
/// `force`, leaves the old primary accepting writes for `isolation`, and then fences it with a
/// demote. Either way the other nodes then follow `new` through update-primary. A failover
/// whose first step fails (the primary is down, or `new` is in a Merkle sync) is skipped and
/// changes nothing.
pub async fn fail_over(
    control: &Control,
    set: &ReplicaSet,
    leadership: &Leadership,
    new: &str,
    planned: bool,
    isolation: Duration,
) -> anyhow::Result<()> {
    let old = leadership.leader();
    let fork = if planned {
        planned_promotion(control, set, &old, new).await?
    } else {
        forced_promotion(control, set, &old, new, isolation).await?
    };
    let Some(fork) = fork else {
        return Ok(());
    };
    leadership.switch(Promotion {
        old: old.clone(),
        new: new.to_owned(),
        fork,
    });
    for host in all_nodes(control) {
        if host != new {
            follow(control, set, new, &host).await?;
        }
    }
    Ok(())
}

/// Waits up to [`CATCH_UP`] for `new` to reach `old`'s Merkle root, demotes `old` and promotes
/// `new`, which first applies everything `old` wrote. Returns the fork point, or `None` when
/// `old` could not be demoted.
///
/// A demoted primary streams to no one, so a secondary that lags at the demote never reaches
/// the final position. Its promotion without `force` then keeps failing, and after
/// [`RETRIES`] / 2 tries it is promoted with `force`, which discards what it lacks.
async fn planned_promotion(
    control: &Control,
    set: &ReplicaSet,
    old: &str,
    new: &str,
) -> anyhow::Result<Option<u64>> {
    let targets = [new.to_owned()];
    if let Err(error) = wait_converged_to(control, old, &targets, CATCH_UP).await {
        tracing::info!(error = %format!("{error:#}"), "demoting before the new primary caught up");
    }
    if let Err(error) = demote(control, set, old).await {
        tracing::warn!(%old, error = %format!("{error:#}"), "planned failover skipped: the demote failed");
        return Ok(None);
    }
    for _ in 0..RETRIES / 2 {
        match promote(control, set, new, false).await {
            Ok(fork) => return Ok(Some(fork)),
            Err(error) => {
                tracing::info!(%new, error = %format!("{error:#}"), "promotion without force failed");
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    // The demoted primary accepts no writes, so the set needs a primary: take the loss.
    retry("forced promotion", || promote(control, set, new, true))
        .await
        .map(Some)
}

/// Isolates `old`, promotes `new` with `force`, lets `old` accept writes for `isolation`,
/// then fences `old` and heals the network. Returns the fork point, or `None` when `new`
/// could not be promoted; the network is healed then too.
async fn forced_promotion(
    control: &Control,
    set: &ReplicaSet,
    old: &str,
    new: &str,
    isolation: Duration,
) -> anyhow::Result<Option<u64>> {
    let others: Vec<String> = all_nodes(control)
        .into_iter()
        .filter(|host| host != old)
        .collect();
    tracing::info!(%old, "isolating the primary");
    for host in &others {
        turmoil::partition(old, host.as_str());
    }
    // Entries already on the wire still arrive; let them land before the fork point is set.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fork = match promote(control, set, new, true).await {
        Ok(fork) => fork,
        Err(error) => {
            tracing::warn!(%new, error = %format!("{error:#}"), "unplanned failover skipped: the promotion failed");
            heal(old, &others);
            return Ok(None);
        }
    };
    tokio::time::sleep(isolation).await;
    let fenced = retry("fencing the old primary", || demote(control, set, old)).await;
    heal(old, &others);
    fenced?;
    Ok(Some(fork))
}

fn heal(old: &str, others: &[String]) {
    for host in others {
        turmoil::repair(old, host.as_str());
    }
}

/// Runs `step` until it succeeds, [`RETRIES`] times at most, [`RETRY_PAUSE`] apart.
async fn retry<T, F, Fut>(action: &str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for _ in 0..RETRIES {
        match step().await {
            Ok(value) => return Ok(value),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    let last = last.map_or_else(String::new, |error| format!("{error:#}"));
    bail!("{action} failed {RETRIES} times; the last error: {last}")
}

/// Demotes `host`, which must be a primary.
async fn demote(control: &Control, set: &ReplicaSet, host: &str) -> anyhow::Result<()> {
    let demoted = set
        .root_api(control, host)
        .post("sys/replication/performance/primary/demote", &json!({}))
        .await?;
    expect_ok(&demoted, &format!("demote of {host}"))
}

/// Promotes `host` and returns the WAL index where its epoch starts.
async fn promote(
    control: &Control,
    set: &ReplicaSet,
    host: &str,
    force: bool,
) -> anyhow::Result<u64> {
    let promoted = set
        .root_api(control, host)
        .post(
            "sys/replication/performance/secondary/promote",
            &json!({ "force": force }),
        )
        .await?;
    expect_ok(&promoted, &format!("promote of {host}"))?;
    tracing::info!(%host, force, epoch_start = %promoted.body["data"]["epoch_start"], "promoted");
    promoted.body["data"]["epoch_start"]["index"]
        .as_u64()
        .context("promote returned no epoch_start.index")
}

/// Moves `host` to the primary `new` with a token `new` issues for id `host`, retrying while
/// `host` or `new` is down or sealed. Each retry takes a new id (`host-2`, `host-3`, ...),
/// because issuing a token registers its id and a failed update-primary leaves it registered.
async fn follow(
    control: &Control,
    set: &ReplicaSet,
    new: &str,
    host: &str,
) -> anyhow::Result<Value> {
    let attempts = std::cell::Cell::new(0);
    retry(&format!("update-primary of {host}"), || async {
        attempts.set(attempts.get() + 1);
        let id = match attempts.get() {
            1 => host.to_owned(),
            attempt => format!("{host}-{attempt}"),
        };
        let data = update_primary(control, set, new, host, &id).await?;
        tracing::info!(%host, %new, %data, "followed the new primary");
        Ok(data)
    })
    .await
}

/// Issues a token on the primary `new` for secondary id `id`, sends it to `host` as
/// update-primary and returns the response's `data`.
pub async fn update_primary(
    control: &Control,
    set: &ReplicaSet,
    new: &str,
    host: &str,
    id: &str,
) -> anyhow::Result<Value> {
    let issued = set
        .root_api(control, new)
        .post(
            "sys/replication/performance/primary/secondary-token",
            &json!({ "id": id }),
        )
        .await?;
    expect_ok(&issued, &format!("secondary-token for {id} on {new}"))?;
    let token = issued.body["wrap_info"]["token"]
        .as_str()
        .context("secondary-token returned no wrap_info.token")?;
    let moved = set
        .root_api(control, host)
        .post(
            "sys/replication/performance/secondary/update-primary",
            &json!({ "token": token, "ca_file": control.api_ca_file() }),
        )
        .await?;
    expect_ok(&moved, &format!("update-primary on {host}"))?;
    Ok(moved.body["data"].clone())
}
