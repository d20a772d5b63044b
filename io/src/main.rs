//! The `coffer` binary.

fn main() -> anyhow::Result<()> {
    Ok(())
}
