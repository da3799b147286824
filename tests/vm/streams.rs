//! The console that follows the host terminal and `--command` as a pipe,
//! driven by the real CLI on the real QEMU: through a pseudo-terminal (the
//! user at a terminal) and through pipes with no terminal at all (a
//! script). Streams do not touch what differs between the run script's
//! eras, except that the virtiofs era's script runs QEMU as its child, so
//! the pipe's core scenario runs in both.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::vm::{Era, BOOT_TIMEOUT, PRINT_SIZE_ON_WINCH, WAITING_FOR_WINCH};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

/// How long the guest may take to show a resize: generous for a loaded
/// machine, and far below anything a user would wait for by hand. The
/// figure a user sees is in the benchmark.
const RESIZE_TIMEOUT: Duration = Duration::from_secs(20);

mod nine_p {
    #[test]
    fn input_reaches_the_command_and_its_output_comes_back_byte_for_byte() {
        super::input_reaches_the_command_and_its_output_comes_back_byte_for_byte(super::Era::NineP)
    }
}

mod virtiofs {
    #[test]
    fn input_reaches_the_command_and_its_output_comes_back_byte_for_byte() {
        super::input_reaches_the_command_and_its_output_comes_back_byte_for_byte(
            super::Era::Virtiofs,
        )
    }
}

/// Bytes a terminal would mangle: CR, LF, NUL, high bytes, no final newline.
fn awkward_bytes() -> Vec<u8> {
    let mut bytes = b"x\n\r\n\0tab\there\n".to_vec();
    bytes.extend((0..=255u8).cycle().take(200_000));
    bytes.extend(b"no final newline");
    bytes
}

fn input_reaches_the_command_and_its_output_comes_back_byte_for_byte(era: Era) {
    let fx = Fixture::new(PATHS, era);
    let out = fx
        .start_piped(&["--command", "cat"])
        .finish(b"x\n", BOOT_TIMEOUT);
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"x\n"[..]),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = awkward_bytes();
    let out = fx
        .start_piped(&["--command", "cat; echo to-stderr >&2; exit 3"])
        .finish(&input, BOOT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    assert!(
        out.stdout == input,
        "stdout differs from the input; stderr: {stderr}"
    );
    assert_eq!(stderr, "to-stderr\n", "stderr holds only the command's");
    fx.assert_no_virtiofsd_left();
}

#[test]
fn output_has_no_carriage_returns_and_boot_messages_stay_out() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let out = fx
        .start_piped(&["--command", "printf 'a\\nb\\n'; echo err >&2"])
        .finish(b"", BOOT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    // nix says what it builds on stderr first; the console says nothing.
    assert!(stderr.ends_with("\nerr\n") || stderr == "err\n", "{stderr}");
    assert!(
        !stderr.contains("Linux version") && !stderr.contains("nixos-shell-guest"),
        "{stderr}"
    );
}

#[test]
fn a_command_ends_the_run_though_its_input_stays_open() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start_piped(&["--command", "echo done"]);
    // Held open and never written to, as `nixos-shell -c ... < /dev/tty`
    // or a parent that keeps the pipe.
    let _stdin = vm.stdin();
    let mut stdout = vm.stdout();
    let status = vm.wait(BOOT_TIMEOUT);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!((status.code(), out.as_str()), (Some(0), "done\n"));
}

#[test]
fn a_reader_that_goes_away_ends_the_command_as_in_a_pipeline() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start_piped(&["--command", "yes"]);
    let mut stdout = vm.stdout();
    let mut first = [0u8; 4];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\ny\n");
    // As `| head -2` does once it has its lines.
    drop(stdout);
    let status = vm.wait(BOOT_TIMEOUT);
    // `yes` ends with SIGPIPE; the shell running it reports 128 + 13.
    assert_eq!(
        status.code(),
        Some(128 + 13),
        "{}",
        String::from_utf8_lossy(&vm.stderr())
    );
}

#[test]
fn the_login_console_follows_the_terminals_size() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&[]);
    vm.wait_for_shell();
    // `sh` gives the typed line too; the size is the last line.
    let (size, _) = vm.sh("stty size");
    assert!(
        size.trim_end().ends_with(&format!("\n{ROWS} {COLS}")),
        "{size:?}"
    );
    vm.send(&format!("{PRINT_SIZE_ON_WINCH}\n"));
    vm.expect(WAITING_FOR_WINCH, RESIZE_TIMEOUT);
    let started = Instant::now();
    vm.resize(40, 120);
    vm.expect("resized-to 40 120-", RESIZE_TIMEOUT);
    eprintln!("the guest saw the resize after {:?}", started.elapsed());
    vm.resize(12, 50);
    let (size, _) = vm.sh("stty size");
    assert!(size.trim_end().ends_with("\n12 50"), "{size:?}");
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));
}

#[test]
fn an_interactive_command_follows_the_terminals_size_and_gets_ctrl_c() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start(&["--command", PRINT_SIZE_ON_WINCH]);
    vm.expect(WAITING_FOR_WINCH, BOOT_TIMEOUT);
    vm.resize(41, 121);
    vm.expect("resized-to 41 121-", RESIZE_TIMEOUT);
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0));

    let mut vm = fx.start(&["--command", "echo interrupt-me; sleep 600"]);
    vm.expect("interrupt-me", BOOT_TIMEOUT);
    // Ctrl-C typed in the terminal: QEMU passes it to the console, where it
    // interrupts the command, not nixos-shell.
    vm.send("\x03");
    assert_eq!(
        vm.wait(BOOT_TIMEOUT).code(),
        Some(130),
        "{}",
        vm.transcript()
    );
}

/// Input written at once, long before the guest opens its port: QEMU holds
/// it until then.
#[test]
fn input_given_before_the_guest_is_up_is_kept() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start_piped(&["--command", "sleep 1; cat"]);
    let mut stdin = vm.stdin();
    stdin.write_all(b"typed early\n").unwrap();
    drop(stdin);
    let mut stdout = vm.stdout();
    let status = vm.wait(BOOT_TIMEOUT);
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!((status.code(), out.as_str()), (Some(0), "typed early\n"));
}
