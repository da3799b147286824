//! The host role: from the command line to a running VM.

use crate::cli::HostArgs;

pub fn run(_args: HostArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not implemented yet")
}
