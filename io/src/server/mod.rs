//! `coffer server`: configuration, storage, the HTTP API and the node's tasks.

pub mod cluster;
pub mod config;
pub mod dev;
pub mod environment;
pub mod http;
pub mod logging;
pub mod net;
pub mod node;
pub mod storage;
pub mod tls;
pub mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use coffer_core::request::Secret;
use coffer_core::storage::{MemStorage, Storage};
use coffer_core::{Core, CoreConfig};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use config::{Config, ConfigError, parse_config};
pub use environment::{Environment, SystemEnvironment};
pub use http::{map_request, render_response};
pub use net::{Listener, Network, TokioNetwork};
pub use node::Node;

use config::{ListenerConfig, StorageConfig};
use dev::DevOptions;
use storage::{DEFAULT_MAP_SIZE, LmdbStorage};
use writer::WriterLimits;

/// Options of `coffer server`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Path of the configuration file (HCL or JSON), or of a directory whose .hcl and .json
    /// files are read in name order.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Runs a single unsealed development node on a temporary LMDB directory.
    #[arg(long)]
    pub dev: bool,
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

fn core_config(config: &Config) -> CoreConfig {
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
    LmdbStorage::open(path, map_size)
        .with_context(|| format!("failed to open the storage at {}", path.display()))
}

/// Starts the node and its listeners, runs dev setup when asked, and serves until a signal.
async fn launch<S: Storage + 'static>(
    config: &Config,
    core: Core,
    storage: S,
    dev: Option<DevOptions>,
) -> anyhow::Result<()> {
    if config.listeners.is_empty() {
        bail!(
            "the config has no listener; add listener \"tcp\" {{ address = \"127.0.0.1:8200\" }}"
        );
    }
    let node = Node::start(core, storage, SystemEnvironment, WriterLimits::default())
        .context("failed to start the storage writer")?;
    let node = Arc::new(node);
    let (stop, stopped) = watch::channel(false);
    let mut servers = JoinSet::new();
    for listener in &config.listeners {
        start_listener(&node, listener, &stopped, &mut servers).await?;
    }

    if let Some(options) = dev {
        let credentials = dev::setup(&node, &options).await?;
        let address = format!("http://{}", config.listeners[0].address);
        dev::print_banner(&address, &credentials);
    }

    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop.send(true);
    while servers.join_next().await.is_some() {}
    tokio::task::block_in_place(|| node.shutdown());
    tracing::info!("the server stopped");
    Ok(())
}

async fn start_listener<S: Storage + 'static>(
    node: &Arc<Node<S, SystemEnvironment>>,
    listener: &ListenerConfig,
    stopped: &watch::Receiver<bool>,
    servers: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let tls = tls_acceptor(listener)?;
    let bound = TokioNetwork
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

fn tls_acceptor(listener: &ListenerConfig) -> anyhow::Result<Option<TlsAcceptor>> {
    if listener.tls_disable {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&listener.tls_cert_file, &listener.tls_key_file) else {
        bail!(
            "listener {}: tls_cert_file and tls_key_file are required unless tls_disable = true",
            listener.address
        );
    };
    let config = tls::server_config(cert, key)
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
