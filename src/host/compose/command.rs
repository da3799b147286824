//! The VM command, composed as a value: the run script of the build, the
//! environment it documents, and the arguments it hands to QEMU (which land
//! after `$QEMU_OPTS`, so later ones win).
//!
//! Arguments, in order: `-m` (--memory, with a memory backend of that size
//! when the run script has one or the shares need one), a shared memory
//! backend of the VM's size when the shares need one and neither the run
//! script nor --memory brings it, `-smp` (--cores), the session share, the
//! shares (`host::shares`), the virtio-serial ports (`ports`), then the
//! user's `-- QEMU_ARGS`. Environment: only what the user did not set, or
//! appended to what they did (`QEMU_NET_OPTS`).

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use super::layout::Layout;
use super::ports::{self, PortSocket};
use crate::host::settings::memory::Memory;
use crate::host::settings::VmSettings;
use crate::host::shares::{self, Exported};
use crate::schema::facts::SESSION_TAG;
use crate::schema::manifest::Manifest;

/// The command that starts the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmCommand {
    pub program: Utf8PathBuf,
    pub args: Vec<String>,
    /// Variables to set; everything else is inherited.
    pub env: BTreeMap<String, String>,
}

/// What the command is made of.
pub struct Parts<'a> {
    pub run_script: &'a Utf8Path,
    /// The build's manifest: the run script's memory backend and size.
    pub manifest: &'a Manifest,
    pub settings: &'a VmSettings,
    /// The environment nixos-shell was started with.
    pub env: &'a BTreeMap<String, String>,
    pub session: &'a Layout,
    pub shares: &'a Exported,
    /// Where the daemons' and the ports' sockets are.
    pub socket_dir: &'a Utf8Path,
    pub ports: &'a [PortSocket],
    /// `NIX_DISK_IMAGE` to set, if any (see `disk`).
    pub disk_image: Option<&'a Utf8Path>,
}

/// The QEMU object id of the memory backend nixos-shell brings along.
const MEMORY_BACKEND_ID: &str = "nixos-shell-mem";

/// Composes the VM command; pure.
pub fn compose(parts: &Parts) -> VmCommand {
    let mut args = memory_args(parts);
    if let Some(cores) = parts.settings.cores {
        args.extend(["-smp".to_owned(), cores.to_string()]);
    }
    // The session share is 9p whatever the other shares use: the guest
    // role finds it by the tag 9p lists in sysfs on any kernel (virtiofs
    // tags only since Linux 6.9), so a VM started without nixos-shell is
    // told apart without a failing mount; it carries two small files, so
    // speed does not matter, and it needs no daemon.
    args.extend([
        "-virtfs".to_owned(),
        shares::virtfs_value(&parts.session.share(), SESSION_TAG, false),
    ]);
    args.extend(parts.shares.qemu_args(parts.socket_dir));
    args.extend(ports::qemu_args(parts.ports));
    args.extend(parts.settings.qemu_args.iter().cloned());
    VmCommand {
        program: parts.run_script.to_owned(),
        args,
        env: environment(parts),
    }
}

/// The run script's variables: a private TMPDIR unless the user set both
/// TMPDIR and USE_TMPDIR, the forwards after the user's QEMU_NET_OPTS, the
/// disk image.
fn environment(parts: &Parts) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if !(parts.env.contains_key("TMPDIR") && parts.env.contains_key("USE_TMPDIR")) {
        env.insert("TMPDIR".to_owned(), parts.session.tmp().to_string());
        env.insert("USE_TMPDIR".to_owned(), "1".to_owned());
    }
    let forwards = &parts.settings.forwards;
    if !forwards.is_empty() {
        let mut net: Vec<String> = parts
            .env
            .get("QEMU_NET_OPTS")
            .filter(|v| !v.is_empty())
            .cloned()
            .into_iter()
            .collect();
        net.extend(forwards.iter().map(|f| f.hostfwd()));
        env.insert("QEMU_NET_OPTS".to_owned(), net.join(","));
    }
    if let Some(image) = parts.disk_image {
        env.insert("NIX_DISK_IMAGE".to_owned(), image.to_string());
    }
    env
}

/// `-m` for --memory, and a shared memory backend when one is needed: of
/// --memory's size when the run script has a backend (QEMU refuses a `-m`
/// other than the backend's size, and the script's object cannot be resized
/// or defined twice; a later `-machine memory-backend=` wins, and the
/// script's unused memfd costs nothing) or the shares need one; of the VM's
/// own size when the shares need one and nothing brings it.
fn memory_args(parts: &Parts) -> Vec<String> {
    let has_backend = parts.manifest.memory_backend.is_some();
    let needed = parts.shares.shared_memory;
    match parts.settings.memory {
        Some(memory) => {
            let mut args = vec!["-m".to_owned(), memory.to_qemu()];
            if has_backend || needed {
                args.extend(memory_backend_args(memory));
            }
            args
        }
        None if needed && !has_backend => parts
            .manifest
            .memory_size
            .map(|mib| memory_backend_args(Memory::MiB(mib)).to_vec())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// A shared memory backend of `memory`, selected for the guest's RAM. It
/// stays shared (`share=on`): virtiofsd maps the guest's memory.
fn memory_backend_args(memory: Memory) -> [String; 4] {
    [
        "-object".to_owned(),
        format!(
            "memory-backend-memfd,id={MEMORY_BACKEND_ID},size={},share=on",
            memory.to_qemu()
        ),
        "-machine".to_owned(),
        format!("memory-backend={MEMORY_BACKEND_ID}"),
    ]
}

#[cfg(test)]
mod tests;
