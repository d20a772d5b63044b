//! `coffer server`: configuration, storage, the HTTP API and the node's tasks.

pub mod activation;
pub mod audit;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod dev_cluster;
pub mod environment;
pub mod expiry;
pub mod forwarding;
pub mod http;
pub mod logging;
pub mod net;
pub mod node;
pub mod storage;
pub mod supervisor;
pub mod tls;
pub mod watch;
pub mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use coffer_core::replication::merkle::Merkle;
use coffer_core::request::Secret;
use coffer_core::storage::{MemStorage, Storage};
use coffer_core::{Core, CoreConfig};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use config::{Config, ConfigError, parse_config};
pub use environment::{Environment, SystemEnvironment};
pub use http::{map_request, render_response};
pub use net::{Listener, Network, TokioNetwork};
pub use node::Node;

use cluster::TlsCrypto;
use config::{ListenerConfig, StorageConfig};
use dev::DevOptions;
use storage::{DEFAULT_MAP_SIZE, LmdbStorage, PinSnapshot};
use writer::WriterLimits;

/// Options of `coffer server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Path of the configuration file (HCL or JSON), or of a directory whose .hcl and .json
    /// files are read in name order.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Runs a single unsealed development node on a temporary LMDB directory.
    #[arg(long, conflicts_with = "dev_cluster")]
    pub dev: bool,
    /// Runs a development primary and one secondary replicating from it, each on its own
    /// temporary LMDB directory, on the dev listen address and the three ports after it.
    #[arg(long)]
    pub dev_cluster: bool,
    /// Address of the dev mode's plain-HTTP listener.
    #[arg(
        long,
        env = "VAULT_DEV_LISTEN_ADDRESS",
        default_value = "127.0.0.1:8200"
    )]
    pub dev_listen_address: SocketAddr,
    /// Id of the dev mode's root token instead of a random one.
    #[arg(long, env = "VAULT_DEV_ROOT_TOKEN_ID", hide_env_values = true)]
    pub dev_root_token_id: Option<String>,
    /// Log level (trace, debug, info, warn, error), overriding the config file.
    #[arg(long)]
    pub log_level: Option<String>,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServerArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run_server(args)),
        Err(error) => Err(anyhow::Error::new(error).context("failed to start the tokio runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("Error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    if args.log_level.is_some() {
        config.log_level = args.log_level.clone();
    }
    logging::init(config.log_level.as_deref(), config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let core = Core::new(core_config(&config));

    if args.dev {
        return run_dev(args, config, core).await;
    }
    if args.dev_cluster {
        return run_dev_cluster(args, config).await;
    }
    match config.storage.clone() {
        Some(StorageConfig::Lmdb { path, map_size }) => {
            let storage = open_lmdb(&path, map_size)?;
            launch(&config, core, storage, None).await
        }
        Some(StorageConfig::InMem) => launch(&config, core, MemStorage::new(), None).await,
        None => bail!("the config has no storage block; add storage \"lmdb\" {{ path = \"...\" }}"),
    }
}

async fn run_dev(args: ServerArgs, mut config: Config, core: Core) -> anyhow::Result<()> {
    let directory = tempfile::Builder::new()
        .prefix("coffer-dev-")
        .tempdir()
        .context("failed to create the dev mode's temporary storage directory")?;
    config
        .listeners
        .insert(0, dev_listener(args.dev_listen_address));
    let storage = open_lmdb(directory.path(), None)?;
    let options = DevOptions {
        root_token_id: args.dev_root_token_id.map(Secret::new),
    };
    let result = launch(&config, core, storage, Some(options)).await;
    // The directory is removed here, after the storage has been closed.
    drop(directory);
    result
}

fn dev_listener(address: SocketAddr) -> ListenerConfig {
    ListenerConfig {
        address,
        cluster_address: None,
        tls_disable: true,
        tls_cert_file: None,
        tls_key_file: None,
        max_request_size: config::DEFAULT_MAX_REQUEST_SIZE,
        max_request_duration: None,
    }
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    if !path.is_dir() {
        return load_config_file(path);
    }
    let mut config = Config::default();
    for file in config_files(path)? {
        let next = load_config_file(&file)?;
        config = config
            .merge(next)
            .with_context(|| format!("invalid config directory {}", path.display()))?;
    }
    Ok(config)
}

/// Lists the `.hcl` and `.json` files of a config directory, sorted by name.
fn config_files(directory: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(directory).with_context(|| {
        format!(
            "failed to read the config directory {}",
            directory.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| {
                format!(
                    "failed to read the config directory {}",
                    directory.display()
                )
            })?
            .path();
        let extension = path.extension().and_then(|extension| extension.to_str());
        if path.is_file() && matches!(extension, Some("hcl" | "json")) {
            files.push(path);
        }
    }
    if files.is_empty() {
        bail!(
            "the config directory {} has no .hcl or .json file",
            directory.display()
        );
    }
    files.sort();
    Ok(files)
}

fn load_config_file(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the config file {}", path.display()))?;
    parse_config(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Builds the core's configuration from the server configuration's lease TTLs.
pub fn core_config(config: &Config) -> CoreConfig {
    let defaults = CoreConfig::default();
    CoreConfig {
        default_lease_ttl: config
            .default_lease_ttl
            .unwrap_or(defaults.default_lease_ttl),
        max_lease_ttl: config.max_lease_ttl.unwrap_or(defaults.max_lease_ttl),
        version: defaults.version,
    }
}

fn open_lmdb(path: &Path, map_size: Option<u64>) -> anyhow::Result<LmdbStorage> {
    let map_size = match map_size {
        Some(size) => usize::try_from(size).context("map_size does not fit this platform")?,
        None => DEFAULT_MAP_SIZE,
    };
    let storage = LmdbStorage::open(path, map_size)
        .with_context(|| format!("failed to open the storage at {}", path.display()))?;
    let upgraded = storage
        .write(|txn| Merkle::upgrade_layout(txn))
        .with_context(|| format!("failed to upgrade the Merkle index at {}", path.display()))?;
    if upgraded {
        tracing::info!(path = %path.display(), "rebuilt the Merkle index stored in an older layout");
    }
    Ok(storage)
}

/// Starts the node and its listeners, runs dev setup when asked, and serves until a signal.
async fn launch<S: Storage + PinSnapshot + 'static>(
    config: &Config,
    core: Core,
    storage: S,
    dev: Option<DevOptions>,
) -> anyhow::Result<()> {
    let running = start_node(config, core, storage, Platform::system()).await?;
    if let Some(options) = dev {
        let credentials = dev::setup(&running.node, &options).await?;
        let address = format!("http://{}", config.listeners[0].address);
        dev::print_banner(&address, &credentials);
    }
    wait_for_signal().await;
    running.stop().await;
    tracing::info!("the server stopped");
    Ok(())
}

/// The way a node commits its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterMode {
    /// A dedicated writer thread batches writes (group commit). Servers use it.
    Thread,
    /// Each write commits on the task that submits it. A single-threaded simulation uses it,
    /// because a writer thread would run outside the simulated schedule.
    Inline,
}

/// The parts a server runs on: its sockets, its clock and randomness, and its writer mode.
#[derive(Clone, Debug)]
pub struct Platform<E, N> {
    /// The clock, the RNG seeds and the cluster port's TLS crypto.
    pub environment: E,
    /// Every listener and outgoing connection goes through it.
    pub network: N,
    /// The way writes commit.
    pub writer: WriterMode,
}

impl Platform<SystemEnvironment, TokioNetwork> {
    /// Returns the operating system's clock, RNG and TCP sockets, with a writer thread.
    pub fn system() -> Platform<SystemEnvironment, TokioNetwork> {
        Platform {
            environment: SystemEnvironment,
            network: TokioNetwork,
            writer: WriterMode::Thread,
        }
    }
}

/// A node serving its listeners until [`RunningNode::stop`].
pub struct RunningNode<S: Storage + 'static, E: Environment> {
    node: Arc<Node<S, E>>,
    writer: WriterMode,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
}

impl<S: Storage + 'static, E: Environment> RunningNode<S, E> {
    /// Returns the running node.
    pub fn node(&self) -> &Arc<Node<S, E>> {
        &self.node
    }

    /// Stops accepting, lets in-flight requests finish and stops the writer. With a writer
    /// thread it needs a multi-threaded tokio runtime, because it waits for that thread.
    pub async fn stop(mut self) {
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = self.stop.send(true);
        while self.servers.join_next().await.is_some() {}
        let node = self.node;
        match self.writer {
            WriterMode::Thread => tokio::task::block_in_place(|| node.shutdown()),
            WriterMode::Inline => node.shutdown(),
        }
    }
}

/// Starts a node over `storage` on `platform`: its writer, the API listeners, the cluster port
/// (on the first listener's `cluster_address`) and the supervisor that runs replication.
pub async fn start_node<S, E, N>(
    config: &Config,
    core: Core,
    storage: S,
    platform: Platform<E, N>,
) -> anyhow::Result<RunningNode<S, E>>
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
    N: Network + Clone,
{
    if config.listeners.is_empty() {
        bail!(
            "the config has no listener; add listener \"tcp\" {{ address = \"127.0.0.1:8200\" }}"
        );
    }
    let replication = config
        .replication
        .engine()
        .context("invalid replication block")?;
    let limits = WriterLimits::default().with_replication(&replication);
    let Platform {
        environment,
        network,
        writer,
    } = platform;
    let node = match writer {
        WriterMode::Thread => Node::start(core, storage, environment, limits)
            .context("failed to start the storage writer")?,
        WriterMode::Inline => Node::start_inline(core, storage, environment, limits),
    };
    let node = Arc::new(node);
    let addresses = activation::NodeAddresses {
        api_addr: config.api_addr.clone(),
        cluster_addr: config.cluster_addr.clone(),
    };
    node.set_interceptor(Arc::new(activation::Activator::new(
        Arc::downgrade(&node),
        network.clone(),
        addresses,
    )));
    let (stop, stopped) = watch::channel(false);
    let mut servers = JoinSet::new();
    for listener in &config.listeners {
        start_listener(&node, &network, listener, &stopped, &mut servers).await?;
    }
    start_replication(&node, &network, config, replication, &stopped, &mut servers).await?;
    servers.spawn(expiry::run(Arc::clone(&node), stopped.clone()));
    Ok(RunningNode {
        node,
        writer,
        stop,
        servers,
    })
}

/// Starts the cluster port (on the first listener's `cluster_address`) and the supervisor
/// that follows the node's replication role.
async fn start_replication<S, E, N>(
    node: &Arc<Node<S, E>>,
    network: &N,
    config: &Config,
    replication: coffer_core::replication::ReplicationConfig,
    stopped: &watch::Receiver<bool>,
    servers: &mut JoinSet<()>,
) -> anyhow::Result<()>
where
    S: Storage + PinSnapshot + 'static,
    E: Environment,
    N: Network + Clone,
{
    let (supervisor, acceptor) =
        supervisor::Supervisor::new(Arc::clone(node), network.clone(), replication);
    let cluster_address = config
        .listeners
        .iter()
        .find_map(|listener| listener.cluster_address);
    if let Some(address) = cluster_address {
        let bound = network
            .bind(address)
            .await
            .with_context(|| format!("failed to listen on the cluster address {address}"))?;
        tracing::info!(%address, "cluster port listening");
        let handler = supervisor.session_handler();
        let mut stop = stopped.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        servers.spawn(cluster::serve_cluster(
            bound,
            acceptor,
            handler,
            cluster::ClusterLimits::default(),
            shutdown,
        ));
    }
    servers.spawn(supervisor.run(stopped.clone()));
    Ok(())
}

async fn run_dev_cluster(args: ServerArgs, config: Config) -> anyhow::Result<()> {
    let addresses = dev_cluster::DevClusterAddresses::from_primary(args.dev_listen_address)
        .map_err(anyhow::Error::msg)?;
    let directory = tempfile::Builder::new()
        .prefix("coffer-dev-cluster-")
        .tempdir()
        .context("failed to create the dev cluster's temporary storage directory")?;
    let primary_config = dev_node_config(&config, addresses.primary_api, addresses.primary_cluster);
    let secondary_config = dev_node_config(
        &config,
        addresses.secondary_api,
        addresses.secondary_cluster,
    );
    let primary_storage = open_lmdb(&directory.path().join("primary"), None)?;
    let secondary_storage = open_lmdb(&directory.path().join("secondary"), None)?;
    let primary = start_node(
        &primary_config,
        Core::new(core_config(&config)),
        primary_storage,
        Platform::system(),
    )
    .await?;
    let secondary = start_node(
        &secondary_config,
        Core::new(core_config(&config)),
        secondary_storage,
        Platform::system(),
    )
    .await?;
    let options = DevOptions {
        root_token_id: args.dev_root_token_id.map(Secret::new),
    };
    let joined = async {
        let primary_credentials = dev::setup(&primary.node, &options).await?;
        let secondary_credentials = dev::setup(&secondary.node, &DevOptions::default()).await?;
        dev_cluster::join(
            &primary.node,
            primary_credentials,
            &secondary.node,
            &secondary_credentials,
        )
        .await
    };
    let result = match joined.await {
        Ok(credentials) => {
            dev_cluster::print_banner(&addresses, &credentials);
            wait_for_signal().await;
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error)),
    };
    secondary.stop().await;
    primary.stop().await;
    tracing::info!("the dev cluster stopped");
    // The directory is removed here, after both storages have been closed.
    drop(directory);
    result
}

/// Builds one dev cluster node's configuration: plain HTTP on `api`, the cluster port on `cluster`.
fn dev_node_config(base: &Config, api: SocketAddr, cluster: SocketAddr) -> Config {
    let mut config = base.clone();
    let mut listener = dev_listener(api);
    listener.cluster_address = Some(cluster);
    config.listeners = vec![listener];
    config.api_addr = Some(format!("http://{api}"));
    config.cluster_addr = Some(format!("https://{cluster}"));
    config
}

async fn start_listener<S: Storage + 'static, E: Environment, N: Network>(
    node: &Arc<Node<S, E>>,
    network: &N,
    listener: &ListenerConfig,
    stopped: &watch::Receiver<bool>,
    servers: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let tls = tls_acceptor(listener, &node.environment().tls_crypto())?;
    let bound = network
        .bind(listener.address)
        .await
        .with_context(|| format!("failed to listen on {}", listener.address))?;
    let limits = http::HttpLimits {
        max_request_size: listener.max_request_size,
        request_timeout: listener
            .max_request_duration
            .unwrap_or(http::HttpLimits::default().request_timeout),
        ..http::HttpLimits::default()
    };
    tracing::info!(address = %listener.address, tls = tls.is_some(), "listening");
    let mut stopped = stopped.clone();
    let shutdown = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    servers.spawn(http::serve(Arc::clone(node), bound, tls, limits, shutdown));
    Ok(())
}

fn tls_acceptor(
    listener: &ListenerConfig,
    crypto: &TlsCrypto,
) -> anyhow::Result<Option<TlsAcceptor>> {
    if listener.tls_disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&listener.tls_cert_file, &listener.tls_key_file) else {
        bail!(
            "listener {}: tls_cert_file and tls_key_file are required unless tls_disable = true",
            listener.address
        );
    };
    let config = tls::server_config(cert, key, crypto)
        .with_context(|| format!("failed to load TLS for the listener {}", listener.address))?;
    Ok(Some(TlsAcceptor::from(config)))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    biased;
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "failed to watch SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
