//! A VM's run waits for QEMU, its daemons and its ports without sleeping
//! on a timer: nixos-shell's own processes make no sleep call and no wait
//! whose timeout is not a deadline, from start to exit (the run script,
//! QEMU and virtiofsd are other programs, left out).

use crate::support::strace::Sleeps;
use crate::support::vm::{Era, Piped, BOOT_TIMEOUT};
use crate::support::vm_fixture::{Fixture, Shares};
use crate::PATHS;

#[test]
fn a_run_with_daemons_and_ports_waits_without_sleeping() {
    let fx = Fixture::with_protocol(PATHS, Era::NineP, Shares::Virtiofs);
    let (traced, sleeps) = Sleeps::trace(&fx.command(&["--command", "cat"]));
    let out = Piped::spawn(traced).finish(b"x\n", BOOT_TIMEOUT);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"x\n"[..]),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let programs = sleeps.programs();
    // QEMU is the run script's child, which strace no longer follows.
    for started in ["/bin/run-vm-vm", "virtiofsd"] {
        assert!(
            programs.iter().any(|p| p.ends_with(started)),
            "the trace saw no {started} start: {programs:?}"
        );
    }
    assert_eq!(sleeps.own(), Vec::<String>::new());
    fx.assert_no_virtiofsd_left();
}
