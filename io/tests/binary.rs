//! Checks of the built `coffer` binary itself.
//!
//! Having an integration test here also makes `cargo test --workspace` rebuild the binary
//! before any test runs, so the end-to-end tests never start a stale server.

use std::process::Command;

#[test]
fn version_prints_package_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("version")
        .output()
        .expect("the coffer binary runs");
    assert!(output.status.success(), "exit status {:?}", output.status);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.trim(),
        format!("Coffer v{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("no-such-command")
        .output()
        .expect("the coffer binary runs");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("Usage"), "stderr: {text}");
}
