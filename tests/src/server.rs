//! One `coffer server` process on free 127.0.0.1 ports with its own LMDB directory.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::api::Api;
use crate::binary::server_binary;
use crate::config::{ServerFiles, ServerOptions, write_files};

/// How long a server may take to respond to `sys/health` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stopped server may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many lines of the log a failing test prints.
const LOG_TAIL_LINES: usize = 60;

/// A running `coffer server`, killed on drop.
pub struct Server {
    dir: tempfile::TempDir,
    files: ServerFiles,
    api_port: u16,
    child: Option<Child>,
}

/// The response of `sys/init`: the unseal key shares (hex) and the root token.
#[derive(Clone, Debug)]
pub struct InitKeys {
    /// The unseal key shares, hex-encoded.
    pub keys: Vec<String>,
    /// The initial root token.
    pub root_token: String,
}

impl Server {
    /// Starts a server over plain HTTP with the default options.
    pub fn start() -> anyhow::Result<Server> {
        Server::start_with(ServerOptions::default())
    }

    /// Starts a server with the given options and waits until it responds.
    pub fn start_with(options: ServerOptions) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir().context("failed to create the server's directory")?;
        let api_port = free_port()?;
        let cluster_port = free_port()?;
        let files = write_files(dir.path(), api_port, cluster_port, &options)?;
        let mut server = Server {
            dir,
            files,
            api_port,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Returns the API address, such as `http://127.0.0.1:41234`.
    pub fn address(&self) -> String {
        let scheme = match self.files.ca_certificate {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://127.0.0.1:{}", self.api_port)
    }

    /// Returns the process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns the LMDB data directory.
    pub fn data_dir(&self) -> &Path {
        &self.files.data_dir
    }

    /// Returns the server's temporary directory, which contains the config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the PEM certificate a TLS server uses, which clients trust as their CA.
    pub fn ca_certificate_path(&self) -> Option<&Path> {
        self.files.ca_certificate.as_deref()
    }

    /// Returns a raw HTTP client for this server, sending `token` if it is not empty.
    pub fn api(&self, token: &str) -> anyhow::Result<Api> {
        Api::new(&self.address(), token, self.ca_certificate_path())
    }

    /// Stops the process with SIGTERM (SIGKILL after a timeout) and waits for it to exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("failed to run kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed with {status}", child.id());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        child.wait()?;
        bail!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed")
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the process and starts it again on the same data directory and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Kills the process with SIGKILL and starts it again on the same data directory.
    pub fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// Initializes the server through `sys/init`.
    pub fn init(&self, shares: u32, threshold: u32) -> anyhow::Result<InitKeys> {
        let body = json!({"secret_shares": shares, "secret_threshold": threshold});
        let response = self.api("")?.put("sys/init", &body)?;
        response.expect_status(200)?;
        let keys = response.body["keys"]
            .as_array()
            .context("sys/init returned no keys")?;
        let keys = keys
            .iter()
            .map(|key| {
                key.as_str()
                    .map(str::to_owned)
                    .context("a key is not a string")
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let root_token = response.body["root_token"]
            .as_str()
            .context("no root_token")?;
        Ok(InitKeys {
            keys,
            root_token: root_token.to_owned(),
        })
    }

    /// Submits key shares to `sys/unseal` and returns the last seal status.
    pub fn unseal(&self, keys: &[&str]) -> anyhow::Result<Value> {
        let api = self.api("")?;
        let mut status = Value::Null;
        for key in keys {
            let response = api.put("sys/unseal", &json!({"key": key}))?;
            response.expect_status(200)?;
            status = response.body;
        }
        Ok(status)
    }

    /// Initializes with 5 shares and threshold 3, unseals with the first 3 and returns the keys.
    pub fn init_and_unseal(&self) -> anyhow::Result<InitKeys> {
        let keys = self.init(5, 3)?;
        let shares = keys
            .keys
            .iter()
            .take(3)
            .map(String::as_str)
            .collect::<Vec<_>>();
        let status = self.unseal(&shares)?;
        if status["sealed"] != Value::Bool(false) {
            bail!("the server is still sealed after 3 of 5 keys: {status}");
        }
        Ok(keys)
    }

    /// Returns the last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.files.log).unwrap_or_default();
        let all = text.lines().collect::<Vec<_>>();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Returns the whole log of the server.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.files.log).unwrap_or_default()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = open_log(&self.files.log)?;
        let child = Command::new(server_binary()?)
            .arg("server")
            .arg("--config")
            .arg(&self.files.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("failed to start coffer server")?;
        self.child = Some(child);
        self.wait_until_responding()
    }

    /// Polls `sys/health` until it returns any status, or the process exits.
    fn wait_until_responding(&mut self) -> anyhow::Result<()> {
        let api = self.api("")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if api.get("sys/health").is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "coffer server exited with {status}:\n{}",
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "coffer server did not respond to sys/health within {START_TIMEOUT:?}:\n{}",
            self.log_tail(LOG_TAIL_LINES)
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The test runner captures standard error and shows it with the failure.
        #[allow(clippy::print_stderr)]
        if std::thread::panicking() {
            let tail = self.log_tail(LOG_TAIL_LINES);
            let address = self.address();
            eprintln!("--- last lines of the log of coffer at {address} ---\n{tail}\n---");
        }
        let _ = self.kill();
    }
}

fn open_log(path: &PathBuf) -> anyhow::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open the log file {}", path.display()))
}

/// Returns a port that was free a moment ago. Another process may take it before the server
/// binds it, which shows up as a start failure.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to bind a free port")?;
    Ok(listener.local_addr()?.port())
}
