//! Finding, and if needed building, the `coffer` binary under test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// Returns the path of the `coffer` binary: `COFFER_BIN` if set, else `coffer` in the target
/// directory this test runs from, built with `cargo build -p coffer-io --bin coffer` if it is
/// missing.
///
/// `cargo test --workspace` rebuilds the binary before any test runs, because the coffer-io
/// package has integration tests. NOTE: `cargo test -p coffer-tests` alone does not, so an
/// existing binary is used as it is there.
pub fn coffer_binary() -> anyhow::Result<PathBuf> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = BINARY.get_or_init(|| locate_or_build().map_err(|error| format!("{error:#}")));
    match found {
        Ok(path) => Ok(path.clone()),
        Err(message) => bail!("{message}"),
    }
}

/// Returns the binary that runs `coffer server`: `COFFER_SERVER_BIN` if set, else
/// [`coffer_binary`]. Setting it tests the client commands of this tree against another
/// build's server.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    match std::env::var_os("COFFER_SERVER_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => coffer_binary(),
    }
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("COFFER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let profile_dir = profile_dir()?;
    let binary = profile_dir.join(format!("coffer{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        build(&profile_dir)?;
    }
    if !binary.exists() {
        bail!(
            "cargo build finished but {} does not exist",
            binary.display()
        );
    }
    Ok(binary)
}

/// Returns the profile directory (`target/debug`): the test binary runs from its `deps/`.
fn profile_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to find the test executable")?;
    let deps = exe
        .parent()
        .context("the test executable has no parent directory")?;
    let dir = if deps.ends_with("deps") {
        deps.parent().context("deps/ has no parent directory")?
    } else {
        deps
    };
    Ok(dir.to_path_buf())
}

fn build(profile_dir: &std::path::Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "coffer-io", "--bin", "coffer"]);
    if profile_dir.ends_with("release") {
        command.arg("--release");
    }
    if let Some(target_dir) = profile_dir.parent() {
        command.arg("--target-dir").arg(target_dir);
    }
    let status = command.status().context("failed to run cargo build")?;
    if !status.success() {
        bail!("cargo build -p coffer-io --bin coffer failed with {status}");
    }
    Ok(())
}
