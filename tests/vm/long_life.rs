//! One VM's long life in its short form (`long_life::Counts::SHORT`),
//! twice:
//! attaches one after another, interactive attaches that resize, a storm
//! of resizes, megabytes through a pipe each way; every session's output
//! exact, and the host's nixos-shell ends with the descriptors it started
//! with, its memory within a tenth of the start, no child unreaped. The
//! benchmark's `long-life` section runs the full form.

use crate::support::long_life::{self, Counts};
use crate::support::vm::Era;
use crate::support::vm_fixture::Fixture;
use crate::PATHS;

#[test]
fn a_long_life_in_short_leaves_the_host_as_it_found_it() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = long_life::boot(&fx, &|command| command);
    // Twice in the same VM: what the first life left behind in the host
    // (memory its allocator kept) must not be where the second grows from.
    for life in 1..=2 {
        let report = long_life::live(&fx, &mut vm, &Counts::SHORT, &|command| command);
        eprintln!("life {life}: {report:?}");
    }
    long_life::power_off(vm);
    fx.assert_no_virtiofsd_left();
    assert_eq!(fx.nix.leftovers(), Vec::<String>::new(), "left in TMPDIR");
}
