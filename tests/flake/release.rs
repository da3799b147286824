//! The release a persistent disk image was created with, kept beside it:
//! recorded on the first run, named in one line when a later build has
//! another, and the VM runs anyway.

use crate::support::our_flake::OurFlake;
use crate::support::vm::Era;
use crate::PATHS;

/// Regression: `system.stateVersion` follows the release while the image
/// persists, and nothing said so when a build of a newer release booted
/// an image made under an older one.
#[test]
fn a_new_image_records_its_release_and_a_later_other_one_is_named() {
    // The run script only ends: what matters happens before it.
    let world = OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\nexit 0\n");
    let project = world.project("release");
    let image = world.root.join("vm.qcow2");
    let record = world.root.join("vm.qcow2.state-version");
    let run = || {
        let out = world
            .cli(
                &["--disk", image.to_str().expect("a UTF-8 path"), ".#vm"],
                &project,
            )
            .output()
            .expect("run nixos-shell");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let stderr = run();
    let release = std::fs::read_to_string(&record)
        .unwrap_or_else(|err| panic!("no record beside a new image ({err}):\n{stderr}"));
    let release = release.trim_end();
    assert!(
        !release.is_empty() && !stderr.contains("stateVersion"),
        "{stderr}"
    );
    // The image as the run script makes it, from an older release.
    std::fs::write(&image, b"QFI\xfb\0\0\0\x03").expect("write the image");
    std::fs::write(&record, "20.03\n").expect("write the record");
    let stderr = run();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("stateVersion"))
        .collect();
    assert_eq!(
        lines,
        [format!(
            "nixos-shell: the disk image {} was created with system.stateVersion 20.03, this build has \
             {release}; stateful services may find data of the older release. Booting it anyway; \
             delete the image to start afresh",
            image.display()
        )],
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "20.03\n");
}

/// An image in the state directory (no `--disk`): the line names the
/// `nixos-shell --reset` that deletes it.
#[test]
fn the_line_about_a_state_image_names_the_reset_that_deletes_it() {
    let world = OurFlake::new(PATHS, Era::NineP, "#!/bin/sh\nexit 0\n");
    let project = world.project("release-state");
    let run = || {
        let out = world
            .cli(&[".#vm"], &project)
            .output()
            .expect("run nixos-shell");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        stderr
    };
    let stderr = run();
    // The record of a new image names where the image goes.
    let state = world.root.join("home/.local/state/nixos-shell");
    let records: Vec<_> = std::fs::read_dir(&state)
        .unwrap_or_else(|err| panic!("no state directory ({err}):\n{stderr}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".qcow2.state-version"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    let image = record.with_extension("");
    std::fs::write(&image, b"QFI\xfb\0\0\0\x03").expect("write the image");
    std::fs::write(record, "20.03\n").expect("write the record");
    let stderr = run();
    let line = stderr
        .lines()
        .find(|l| l.contains("stateVersion"))
        .unwrap_or_else(|| panic!("no line: {stderr}"));
    assert!(
        line.ends_with("Booting it anyway; start afresh with `nixos-shell --reset '.#vm'`"),
        "{line}"
    );
}
