//! The data that crosses a boundary, in one place so that each side reads
//! what the other writes.
//!
//! - [`manifest`]: what the NixOS module says about a build (module → CLI),
//!   shipped inside the build result at [`manifest::MANIFEST_PATH`].
//! - [`facts`]: what the invoking user's host is like at run time
//!   (CLI → guest role), and what the guest hands back (guest role → CLI).
//! - [`ports`]: the virtio-serial ports that carry the terminal's size,
//!   `--command`'s streams and the attached sessions while the VM runs.
//! - [`attach`]: the frames of `nixos-shell --attach` sessions (client →
//!   the VM's nixos-shell → guest role, and back).
//!
//! Every document carries a `version`; readers ignore fields they do not know,
//! so either side may grow without breaking the other.
//!
//! A share of a host directory has four shapes on its way into the guest,
//! each named for what it is:
//!
//! - [`manifest::ExtraMount`]: one the module declares
//!   (`nixos-shell.mounts.extraMounts`), in the build's manifest;
//! - `host::settings::MountFlag`: one `--mount` asks for, for one run;
//! - `host::shares::Share`: either of those, or the home and Nix profile,
//!   as the host exports it to QEMU (`-virtfs`, or a virtiofsd of
//!   `host::shares::virtiofs`) with its tag;
//! - [`facts::GuestMount`]: the same share as the guest role mounts it,
//!   in the host facts.

pub mod attach;
pub mod facts;
pub mod manifest;
pub mod ports;
