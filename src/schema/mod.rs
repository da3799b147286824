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
//! What the guest writes is read as untrusted: a guest crashes, runs broken
//! programs and may run code nobody trusts. Each reader of its bytes holds
//! at most a constant it names ([`attach::Decoder::CAPACITY`],
//! [`ports::MAX_LINE`], [`facts::MAX_RESULT_LEN`]) and says what was wrong
//! with what it refuses; property tests (`proptest`, a fixed number of
//! cases) feed them generated input.
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
pub mod host_nix;
pub mod manifest;
pub mod ports;

/// `code` as the exit status of a process: 0 to 255, `128 + N` when
/// signal `N` ended it. Anything else (a status the guest cannot have had)
/// is `None`, never truncated to a byte: 256 must not read as success.
pub fn exit_status(code: i32) -> Option<u8> {
    u8::try_from(code).ok()
}

/// The property tests' settings: a fixed number of cases, so that a run
/// takes a bounded time; no regression files written into the sources.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: 256,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_status_is_a_byte_and_nothing_is_truncated_into_one() {
        assert_eq!(exit_status(0), Some(0));
        assert_eq!(exit_status(130), Some(130));
        assert_eq!(exit_status(255), Some(255));
        for code in [256, 257, -1, -256, i32::MAX, i32::MIN] {
            assert_eq!(exit_status(code), None, "{code}");
        }
    }
}
