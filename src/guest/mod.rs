//! The guest role: applies the host facts before the console login.

use crate::cli::GuestArgs;

pub fn run(_args: GuestArgs) -> anyhow::Result<u8> {
    anyhow::bail!("not implemented yet")
}
