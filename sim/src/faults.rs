//! Fault schedules drawn from a seed, and their injection during a run's faulty phase.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha20Rng;

use crate::failover::{Leadership, fail_over};
use crate::harness::{Control, DEFAULT_MAX_LATENCY, PRIMARY};
use crate::set::ReplicaSet;

/// One fault: what happens, to whom, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No message crosses between `a` and `b` in either direction.
    Partition { a: String, b: String },
    /// Messages between `a` and `b` are held back, then delivered together.
    Hold { a: String, b: String },
    /// The host stops at once and starts again (sealed) when the fault ends.
    Crash { host: String },
    /// The host restarts at once, and the scenario waits for the fault's duration after it.
    Bounce { host: String },
    /// Messages between `a` and `b` take up to `max` to arrive.
    Latency { a: String, b: String, max: Duration },
    /// The primary role moves to `new_primary`. An unplanned failover leaves the old primary
    /// isolated and accepting writes for the fault's duration before it is fenced.
    Failover { new_primary: String, planned: bool },
}

/// A fault and when it starts and ends, relative to the start of the faulty phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledFault {
    /// When the fault starts.
    pub at: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// The fault.
    pub fault: Fault,
}

/// Draws between 2 and 8 faults over `phase` among `hosts` (the primary first).
pub fn draw_schedule(
    rng: &mut ChaCha20Rng,
    hosts: &[String],
    phase: Duration,
) -> Vec<ScheduledFault> {
    let count = rng.gen_range(2..=8);
    let phase_ms = u64::try_from(phase.as_millis()).unwrap_or(u64::MAX).max(2);
    let mut schedule: Vec<ScheduledFault> = (0..count)
        .map(|_| {
            let at = Duration::from_millis(rng.gen_range(0..phase_ms / 2));
            let duration = Duration::from_millis(rng.gen_range(500..phase_ms / 2));
            let host = |rng: &mut ChaCha20Rng| hosts[rng.gen_range(0..hosts.len())].clone();
            let pair = |rng: &mut ChaCha20Rng| {
                let other = hosts[rng.gen_range(1..hosts.len())].clone();
                (PRIMARY.to_owned(), other)
            };
            let fault = match rng.gen_range(0..5) {
                0 => {
                    let (a, b) = pair(rng);
                    Fault::Partition { a, b }
                }
                1 => {
                    let (a, b) = pair(rng);
                    Fault::Hold { a, b }
                }
                2 => Fault::Crash { host: host(rng) },
                3 => Fault::Bounce { host: host(rng) },
                _ => {
                    let (a, b) = pair(rng);
                    let max = Duration::from_millis(rng.gen_range(50..2000));
                    Fault::Latency { a, b, max }
                }
            };
            ScheduledFault {
                at,
                duration,
                fault,
            }
        })
        .collect();
    schedule.sort_by_key(|scheduled| scheduled.at);
    schedule
}

/// Draws one failover to a random secondary of `hosts` (the primary first) in the middle half
/// of `phase`, so the workload writes both before and after it. An unplanned failover isolates
/// the old primary for 1 to 6 s after the promotion.
pub fn draw_failover(
    rng: &mut ChaCha20Rng,
    hosts: &[String],
    phase: Duration,
    planned: bool,
) -> ScheduledFault {
    let phase_ms = u64::try_from(phase.as_millis()).unwrap_or(u64::MAX).max(4);
    let at = Duration::from_millis(rng.gen_range(phase_ms / 4..phase_ms * 3 / 4));
    let duration = Duration::from_millis(rng.gen_range(1000..6000));
    let new_primary = hosts[rng.gen_range(1..hosts.len())].clone();
    ScheduledFault {
        at,
        duration,
        fault: Fault::Failover {
            new_primary,
            planned,
        },
    }
}

/// Injects `schedule`, then ends every fault that is still on: heals the links, restores the
/// latency, restarts the stopped hosts and unseals every host. Fails when a failover could not
/// be completed; the other faults cannot fail.
pub async fn inject(
    control: &Control,
    set: &ReplicaSet,
    leadership: &Leadership,
    schedule: Vec<ScheduledFault>,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for scheduled in schedule {
        tokio::time::sleep_until(started + scheduled.at).await;
        tracing::info!(fault = ?scheduled.fault, duration_ms = scheduled.duration.as_millis() as u64, "fault starts");
        let control = control.clone();
        let set = set.clone();
        let leadership = leadership.clone();
        tasks.push(tokio::task::spawn_local(async move {
            run_fault(&control, &set, &leadership, &scheduled).await
        }));
    }
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failed = Some(error),
            Err(error) => failed = Some(anyhow::anyhow!("a fault task failed: {error}")),
        }
    }
    heal_all(control, set).await;
    failed.map_or(Ok(()), Err)
}

async fn run_fault(
    control: &Control,
    set: &ReplicaSet,
    leadership: &Leadership,
    scheduled: &ScheduledFault,
) -> anyhow::Result<()> {
    match &scheduled.fault {
        Fault::Partition { a, b } => {
            turmoil::partition(a.as_str(), b.as_str());
            tokio::time::sleep(scheduled.duration).await;
            turmoil::repair(a.as_str(), b.as_str());
        }
        Fault::Hold { a, b } => {
            turmoil::hold(a.as_str(), b.as_str());
            tokio::time::sleep(scheduled.duration).await;
            turmoil::release(a.as_str(), b.as_str());
        }
        Fault::Crash { host } => {
            control.crash(host).await;
            tokio::time::sleep(scheduled.duration).await;
            control.restart(host).await;
            let _ = set.unseal(control, host).await;
        }
        Fault::Bounce { host } => {
            control.restart(host).await;
            let _ = set.unseal(control, host).await;
            tokio::time::sleep(scheduled.duration).await;
        }
        Fault::Latency { a, b, max } => {
            control.set_latency(a, b, *max).await;
            tokio::time::sleep(scheduled.duration).await;
            control.set_latency(a, b, DEFAULT_MAX_LATENCY).await;
        }
        Fault::Failover {
            new_primary,
            planned,
        } => {
            fail_over(
                control,
                set,
                leadership,
                new_primary,
                *planned,
                scheduled.duration,
            )
            .await?;
        }
    }
    tracing::info!(fault = ?scheduled.fault, "fault ends");
    Ok(())
}

/// Ends every fault: all links repaired and released, latency restored, every host running
/// and unsealed.
pub async fn heal_all(control: &Control, set: &ReplicaSet) {
    let mut hosts = vec![PRIMARY.to_owned()];
    hosts.extend(control.secondaries());
    for a in &hosts {
        for b in &hosts {
            if a < b {
                turmoil::repair(a.as_str(), b.as_str());
                turmoil::release(a.as_str(), b.as_str());
                control.set_latency(a, b, DEFAULT_MAX_LATENCY).await;
            }
        }
    }
    for host in &hosts {
        if control.is_crashed(host) {
            control.restart(host).await;
        }
    }
    for host in &hosts {
        if let Err(error) = set.unseal(control, host).await {
            tracing::warn!(host, %error, "unsealing after the faults failed");
        }
    }
}
