//! The simulation of one replica set: turmoil hosts running the real `coffer-io` server over
//! [`MemStorage`], a scenario client, and the actions (crashes, restarts, partitions) the
//! scenario requests.
//!
//! A scenario runs as the turmoil client `client` (and optionally `attacker`). Crashing and
//! restarting a host needs the [`turmoil::Sim`] itself, which only the driver loop holds, so
//! the scenario queues those actions on its [`Control`] and the driver applies them right
//! after the step in which they were queued.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use coffer_core::Core;
use coffer_core::storage::MemStorage;
use coffer_io::server::{Platform, WriterMode, core_config, parse_config, start_node};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::client::{API_PORT, ApiClient};
use crate::environment::{SimEnvironment, seed_tls_random};
use crate::network::{SimNetwork, StreamRegistry};
use crate::pki::ApiCertificate;
use crate::trace::Trace;

/// The cluster port of every simulated node.
pub const CLUSTER_PORT: u16 = 8201;

/// The maximum message latency of every link unless a fault raises it.
pub const DEFAULT_MAX_LATENCY: Duration = Duration::from_millis(20);

/// The host name of the primary.
pub const PRIMARY: &str = "primary";

/// The settings of one simulated replica set.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed of every random choice: turmoil's, the nodes' and the scenario's.
    pub seed: u64,
    /// The number of secondaries, hosts `secondary-1` to `secondary-N`.
    pub secondaries: usize,
    /// The body of each node's `replication { ... }` block.
    pub replication: String,
    /// The simulated time after which the run fails.
    pub max_duration: Duration,
    /// Further nodes that start standalone, for scenarios that need a spare node to activate
    /// or a second, unrelated primary.
    pub extra_hosts: Vec<String>,
}

impl SimConfig {
    /// Returns the settings of `secondaries` secondaries with fast heartbeats, for seed `seed`.
    pub fn new(seed: u64, secondaries: usize) -> SimConfig {
        SimConfig {
            seed,
            secondaries,
            replication: "heartbeat_interval = \"1s\"\nheartbeat_timeout = \"4s\"".to_owned(),
            max_duration: Duration::from_secs(600),
            extra_hosts: Vec::new(),
        }
    }

    /// Adds standalone nodes named `hosts`.
    pub fn with_extra_hosts(mut self, hosts: &[&str]) -> SimConfig {
        self.extra_hosts
            .extend(hosts.iter().map(|host| (*host).to_owned()));
        self
    }

    /// Replaces the `replication { ... }` block's body.
    pub fn with_replication(mut self, body: &str) -> SimConfig {
        self.replication = body.to_owned();
        self
    }
}

/// Returns the host name of secondary `number`, counted from 1.
pub fn secondary_host(number: usize) -> String {
    format!("secondary-{number}")
}

/// An action on a host that the driver applies between steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Stops the host's software at once; its committed storage stays.
    Crash(String),
    /// Starts a crashed host's software again (a running one is restarted).
    Restart(String),
    /// Sets the maximum message latency of the links between two hosts.
    Latency {
        /// One end.
        a: String,
        /// The other end.
        b: String,
        /// The new maximum latency.
        max: Duration,
    },
}

/// The scenario's handle on the simulation: the hosts, their storage and the action queue.
#[derive(Clone)]
pub struct Control {
    actions: Rc<RefCell<VecDeque<Action>>>,
    crashed: Rc<RefCell<BTreeSet<String>>>,
    storages: Rc<BTreeMap<String, MemStorage>>,
    api_ca: Rc<Vec<u8>>,
    api_ca_file: Rc<String>,
    seed: u64,
    secondaries: usize,
}

impl Control {
    /// Returns the run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Returns a scenario RNG for `purpose`, seeded from the run's seed.
    pub fn rng(&self, purpose: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ purpose)
    }

    /// Returns the host names of the secondaries.
    pub fn secondaries(&self) -> Vec<String> {
        (1..=self.secondaries).map(secondary_host).collect()
    }

    /// Returns the storage of `host`, which outlives its crashes.
    pub fn storage(&self, host: &str) -> &MemStorage {
        &self.storages[host]
    }

    /// Returns an API client of `host` without a token.
    pub fn api(&self, host: &str) -> ApiClient {
        ApiClient::new(host, &self.api_ca)
            .expect("the generated API certificate is a valid trust anchor")
    }

    /// Returns the path of the API certificate's PEM file, the `ca_file` of an activation.
    pub fn api_ca_file(&self) -> &str {
        &self.api_ca_file
    }

    /// Returns whether `host` was crashed and not restarted since.
    pub fn is_crashed(&self, host: &str) -> bool {
        self.crashed.borrow().contains(host)
    }

    /// Crashes `host` and waits one step for the driver to apply it.
    pub async fn crash(&self, host: &str) {
        tracing::info!(host, "crash");
        self.crashed.borrow_mut().insert(host.to_owned());
        self.queue(Action::Crash(host.to_owned())).await;
    }

    /// Restarts `host` and waits one step for the driver to apply it.
    pub async fn restart(&self, host: &str) {
        tracing::info!(host, "restart");
        self.crashed.borrow_mut().remove(host);
        self.queue(Action::Restart(host.to_owned())).await;
    }

    /// Sets the maximum latency between `a` and `b` and waits one step for the driver to
    /// apply it.
    pub async fn set_latency(&self, a: &str, b: &str, max: Duration) {
        tracing::info!(a, b, max_ms = max.as_millis() as u64, "link latency");
        self.queue(Action::Latency {
            a: a.to_owned(),
            b: b.to_owned(),
            max,
        })
        .await;
    }

    async fn queue(&self, action: Action) {
        self.actions.borrow_mut().push_back(action);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One simulated replica set and its driver.
pub struct Harness {
    sim: turmoil::Sim<'static>,
    control: Control,
    trace: Trace,
    config: SimConfig,
    streams: Arc<StreamRegistry>,
    _trace_guard: tracing::subscriber::DefaultGuard,
    _files: tempfile::TempDir,
}

impl Harness {
    /// Builds the simulation: the primary and the secondaries, each serving the API with TLS
    /// and the cluster port, none initialised.
    pub fn new(config: SimConfig) -> anyhow::Result<Harness> {
        let trace = Trace::default();
        let trace_guard = trace.install();
        seed_tls_random(config.seed);
        let streams = StreamRegistry::install();
        let files = tempfile::Builder::new()
            .prefix("coffer-sim-")
            .tempdir()
            .context("failed to create the directory of the API certificate")?;
        let certificate = ApiCertificate::generate(config.seed)?;
        let (cert_file, key_file) = certificate.write(files.path())?;
        let api_ca_file = certificate.write_shared_ca()?;

        let mut sim = turmoil::Builder::new()
            .simulation_duration(config.max_duration)
            .tick_duration(Duration::from_millis(5))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(DEFAULT_MAX_LATENCY)
            .tcp_capacity(4096)
            .build_with_rng(Box::new(ChaCha20Rng::seed_from_u64(config.seed)));

        let mut hosts = vec![PRIMARY.to_owned()];
        hosts.extend((1..=config.secondaries).map(secondary_host));
        hosts.extend(config.extra_hosts.iter().cloned());
        let mut storages = BTreeMap::new();
        for host in &hosts {
            let storage = MemStorage::new();
            storages.insert(host.clone(), storage.clone());
            let node = NodeSetup {
                host: host.clone(),
                seed: config.seed,
                storage,
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
                replication: config.replication.clone(),
                incarnation: Arc::new(AtomicU64::new(0)),
            };
            sim.host(host.as_str(), move || node.clone().run());
        }
        let control = Control {
            actions: Rc::new(RefCell::new(VecDeque::new())),
            crashed: Rc::new(RefCell::new(BTreeSet::new())),
            storages: Rc::new(storages),
            api_ca: Rc::new(certificate.cert_der),
            api_ca_file: Rc::new(api_ca_file),
            seed: config.seed,
            secondaries: config.secondaries,
        };
        Ok(Harness {
            sim,
            control,
            trace,
            config,
            streams,
            _trace_guard: trace_guard,
            _files: files,
        })
    }

    /// Returns the scenario's handle.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Returns the run's trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Adds a scenario host named `name` that runs `scenario` to its end.
    pub fn client<F>(&mut self, name: &str, scenario: F)
    where
        F: Future<Output = anyhow::Result<()>> + 'static,
    {
        self.sim.client(name, async move {
            scenario
                .await
                .map_err(|error| -> Box<dyn std::error::Error> { format!("{error:#}").into() })
        });
    }

    /// Steps the simulation until every scenario host has finished, applying queued actions
    /// between steps, then records the wire digest of the nodes' streams in the trace. Fails
    /// with the seed and the replay command when a scenario fails.
    pub fn run(&mut self) -> anyhow::Result<()> {
        loop {
            let finished = self
                .sim
                .step()
                .map_err(|error| self.failure(&error.to_string()));
            self.apply_actions();
            match finished {
                Ok(true) => {
                    let (bytes, sha256) = self.streams.wire_digest();
                    tracing::info!(bytes, sha256, "bytes carried by the nodes' streams");
                    return Ok(());
                }
                Ok(false) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Describes a failed run: the error, the seed, the replay command and the trace's end.
    pub fn failure(&self, error: &str) -> anyhow::Error {
        let tail = self.trace.tail(40).join("\n");
        anyhow!(
            "{error}\nseed {seed}; replay with: SIM_SEED={seed} cargo test -p sim --test {test}\n\
             last trace lines:\n{tail}",
            seed = self.config.seed,
            test = test_binary_name(),
        )
    }

    fn apply_actions(&mut self) {
        loop {
            let action = self.control.actions.borrow_mut().pop_front();
            match action {
                Some(Action::Crash(host)) => {
                    let ip = self.sim.lookup(host.as_str());
                    self.streams.run_crash(ip, || self.sim.crash(host.as_str()));
                }
                Some(Action::Restart(host)) => {
                    let ip = self.sim.lookup(host.as_str());
                    self.streams
                        .run_crash(ip, || self.sim.bounce(host.as_str()));
                }
                Some(Action::Latency { a, b, max }) => {
                    self.sim
                        .set_link_max_message_latency(a.as_str(), b.as_str(), max);
                }
                None => return,
            }
        }
    }
}

/// The settings a node host starts with, and restarts with after a crash.
#[derive(Clone)]
struct NodeSetup {
    host: String,
    seed: u64,
    storage: MemStorage,
    cert_file: String,
    key_file: String,
    replication: String,
    incarnation: Arc<AtomicU64>,
}

impl NodeSetup {
    async fn run(self) -> turmoil::Result {
        let ip: IpAddr = turmoil::lookup(self.host.as_str());
        let text = format!(
            r#"
listener "tcp" {{
  address = "0.0.0.0:{API_PORT}"
  cluster_address = "0.0.0.0:{CLUSTER_PORT}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
api_addr = "https://{ip}:{API_PORT}"
cluster_addr = "https://{ip}:{CLUSTER_PORT}"
replication {{
{replication}
}}
"#,
            cert = self.cert_file,
            key = self.key_file,
            replication = self.replication,
        );
        let config = parse_config(&text)?;
        let incarnation = self.incarnation.fetch_add(1, Ordering::Relaxed);
        let platform = Platform {
            environment: SimEnvironment::new(self.seed, &self.host, incarnation),
            network: SimNetwork,
            writer: WriterMode::Inline,
        };
        let core = Core::new(core_config(&config));
        let running = start_node(&config, core, self.storage, platform)
            .await
            .map_err(|error| format!("{}: {error:#}", self.host))?;
        std::future::pending::<()>().await;
        drop(running);
        Ok(())
    }
}

/// Returns the name of the running test target: the test binary's file name without cargo's
/// hash suffix.
fn test_binary_name() -> String {
    let binary = std::env::args().next().unwrap_or_default();
    let file = std::path::Path::new(&binary)
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("TARGET");
    match file.rsplit_once('-') {
        Some((name, _hash)) => name.to_owned(),
        None => file.to_owned(),
    }
}

/// Returns the seed a scenario runs with: `SIM_SEED` when set, otherwise `default`.
pub fn seed_or(default: u64) -> u64 {
    std::env::var("SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(default)
}
