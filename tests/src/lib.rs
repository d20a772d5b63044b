//! Helpers that start real `coffer` processes for end-to-end tests.
//!
//! [`Server`] writes a configuration into a temporary directory, starts `coffer server` on free
//! 127.0.0.1 ports with LMDB storage in that directory, waits for `sys/health` to respond, and
//! kills the process when dropped. A test that panics gets the tail of the server's log on
//! standard error. [`Api`] sends raw HTTP requests; [`vault_client`] builds a `vaultrs` client.

mod api;
mod binary;
pub mod cluster;
mod config;
mod server;

pub use api::{Api, ApiResponse, string_at};
pub use binary::{coffer_binary, server_binary};
pub use config::ServerOptions;
pub use server::{InitKeys, Server};

/// Builds a `vaultrs` client for the server's address with the given token.
pub fn vault_client(server: &Server, token: &str) -> anyhow::Result<vaultrs::client::VaultClient> {
    install_crypto_provider();
    let mut settings = vaultrs::client::VaultClientSettingsBuilder::default();
    settings.address(server.address()).token(token);
    if let Some(ca) = server.ca_certificate_path() {
        settings.ca_certs(vec![ca.display().to_string()]);
    }
    let settings = settings.build()?;
    Ok(vaultrs::client::VaultClient::new(settings)?)
}

/// Returns a multi-threaded tokio runtime for the async `vaultrs` calls of one test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime builds on any test machine")
}

/// Returns a random string of `length` alphanumeric characters, for markers that must be unique.
pub fn random_marker(length: usize) -> String {
    use rand::Rng;
    let rng = rand::thread_rng();
    rng.sample_iter(rand::distributions::Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// Installs ring as rustls' process-wide provider, which `rustls-no-provider` clients need.
pub(crate) fn install_crypto_provider() {
    // An error means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
