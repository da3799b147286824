//! A guest that misbehaves on nixos-shell's ports: a program of the
//! guest's root (busybox, as code nobody trusts would) takes a port from
//! the guest role and writes malformed, oversized and out-of-order
//! frames and random bytes on it, while other sessions run. The host's
//! nixos-shell must not crash or grow; what was hit ends with one line
//! naming it; the rest goes on byte for byte; terminals are restored and
//! nothing is left.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::support::vm::same_settings;
use crate::support::vm::{
    open_fds, rss_kib, zombie_children, Console, Era, Permit, Pty, BOOT_TIMEOUT,
};
use crate::support::vm_fixture::{Fixture, COLS, ROWS};
use crate::PATHS;

/// How long one step may take (far above what it takes).
const STEP: Duration = Duration::from_secs(60);

/// What the host's nixos-shell may grow by over the test, in KiB: far
/// below the garbage the guest sends it ([`GARBAGE`]).
const GROWTH_KIB: u64 = 4 * 1024;

/// Attaches tried while the guest's attach server starts again.
const RETRIES: usize = 100;

/// The random bytes the guest sends after its bad frames.
const GARBAGE: usize = 8 * 1024 * 1024;

/// `len` bytes that look random (a fixed generator: the same every run).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The guest's device of the port named `name`, in a shell variable `p`.
fn find_port(name: &str) -> String {
    format!(
        "p=; for d in /sys/class/virtio-ports/*; do [ \"$(cat $d/name 2>/dev/null)\" = {name} ] && p=/dev/${{d##*/}}; done; [ -n \"$p\" ]"
    )
}

/// Kills the guest role's process whose arguments hold `what`, as a
/// program of root's could, so that its port is free to take.
fn kill_guest_role(vm: &mut Console, what: &str) {
    let first = &what[..1];
    let rest = &what[1..];
    let (out, status) = vm.sh(&format!(
        "kill $(ps -o pid,args | grep '[{first}]{rest}' | awk '{{print $1}}'); sleep 1"
    ));
    assert_eq!(status, 0, "{out}");
}

/// The terminal's transcript once it shows `needle`, wherever (the
/// cursor of [`Console::expect`] may be past it); fails after [`STEP`].
fn shown(vm: &Console, needle: &str) -> String {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let said = vm.transcript();
        if said.contains(needle) {
            return said;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} was not shown: {said}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A frame of the attach protocol (`schema::attach`), whatever it says.
fn frame(kind: u8, session: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    [
        &[kind][..],
        &session.to_be_bytes(),
        &len.to_be_bytes(),
        payload,
    ]
    .concat()
}

/// The host's nixos-shell, looked at before and after.
struct Host {
    pid: u32,
    rss_kib: u64,
    fds: usize,
}

impl Host {
    fn look(vm: &Console) -> Host {
        let pid = vm.pid();
        Host {
            pid,
            rss_kib: rss_kib(pid),
            fds: open_fds(pid).len(),
        }
    }
}

/// The resize port, then the attach port, each taken by a program of
/// the guest's that writes what the guest role never does, while
/// attaches (one on a terminal, one through pipes) run. What the resize
/// garbage hits is the console's size only: the attaches finish byte for
/// byte. What the attach garbage hits is every attach: each ends with one
/// line, its terminal restored, and once the guest's server starts again,
/// attach works as before. The console stays up throughout, and the host
/// neither grows nor keeps a descriptor or a child.
#[test]
fn a_guest_that_garbles_its_ports_ends_what_it_hit_and_nothing_else() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let pty = Pty::open(ROWS, COLS);
    let vm_settings = pty.termios();
    let mut vm = Console::spawn_on(pty, fx.command(&[]), Some(Permit::acquire(1)));
    vm.wait_for_shell();
    let before = Host::look(&vm);

    // The resize port: out-of-order requests, then a line longer than any
    // the port carries.
    let mut terminal = fx.attach(&[]);
    terminal.wait_for_shell();
    let resize_garbage = fx.cwd().join("resize-garbage");
    let mut bytes = b"size\nsize\n".to_vec();
    bytes.extend(random_bytes(4096, 1).iter().map(|b| b | 0x80));
    std::fs::write(&resize_garbage, &bytes).unwrap();
    kill_guest_role(&mut vm, "follow-resizes");
    let (out, status) = vm.sh(&format!(
        "{}; cat {} > $p",
        find_port("org.nixos-shell.resize"),
        resize_garbage.display()
    ));
    assert_eq!(status, 0, "{out}");
    // Said on nixos-shell's terminal, before or after the shell's marker.
    let said = shown(&vm, "on the resize port");
    assert_eq!(
        said.matches("on the resize port").count(),
        1,
        "not one line: {said}"
    );
    assert!(
        said.contains("the guest sent a line longer than 64 bytes on the resize port"),
        "{said}"
    );
    // The attaches it did not hit: a pipe byte for byte, a terminal that
    // follows its resize.
    let input = random_bytes(1024 * 1024, 2);
    let piped = fx.attach_piped(&["-c", "cat"]).finish(&input, STEP);
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    assert!(
        piped.stdout == input,
        "{} bytes of {}",
        piped.stdout.len(),
        input.len()
    );
    terminal.resize(33, 111);
    let (size, _) = terminal.sh("stty size");
    assert!(size.trim_end().ends_with("\n33 111"), "{size:?}");
    terminal.send("exit 0\n");
    assert_eq!(
        terminal.wait(STEP).code(),
        Some(0),
        "{}",
        terminal.transcript()
    );

    // The attach port: an output for a session nobody opened, an
    // acknowledgement of input never sent (to the terminal's session,
    // the relay's third), a frame longer than any may be, then random
    // bytes.
    let pty = Pty::open(ROWS, COLS);
    let settings = pty.termios();
    let mut terminal = Console::spawn_on(pty, fx.attach_command(&[]), None);
    terminal.wait_for_shell();
    let mut waiting = fx.attach_piped(&["-c", "echo up; sleep 600"]);
    let mut out = BufReader::new(waiting.stdout());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    let attach_garbage = fx.cwd().join("attach-garbage");
    let mut bytes = frame(16, 99, b"to nobody");
    bytes.extend(frame(20, 3, &u32::MAX.to_be_bytes()));
    bytes.extend([16, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
    bytes.extend(random_bytes(GARBAGE, 3));
    std::fs::write(&attach_garbage, &bytes).unwrap();
    kill_guest_role(&mut vm, "serve-attach");
    let (out, status) = vm.sh(&format!(
        "{}; cat {} > $p",
        find_port("org.nixos-shell.attach"),
        attach_garbage.display()
    ));
    assert_eq!(status, 0, "{out}");
    // Each session it hit ends with one line and status 1.
    assert_eq!(
        terminal.wait(STEP).code(),
        Some(1),
        "{}",
        terminal.transcript()
    );
    let after_shell = terminal.transcript();
    assert!(
        after_shell.contains("the VM's attach server sent an acknowledgement of 4294967295 bytes"),
        "{after_shell}"
    );
    assert!(
        same_settings(&settings, &terminal.pty().termios()),
        "the terminal's settings were not restored"
    );
    let status = waiting.wait(STEP);
    let stderr = text(&waiting.stderr());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the VM's attach server sent a frame of 4294967295 bytes"),
        "{stderr}"
    );
    // Until a server starts again, an attach is told so in one line.
    let refused = fx.attach_piped(&["-c", "true"]).finish(b"", STEP);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("attach again once it restarts"), "{stderr}");
    // The console it did not hit.
    let (said, status) = vm.sh("echo console-still-\"here\"");
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("console-still-here"), "{said}");
    // The server starts again (as its unit would): once its hello is in,
    // attach works. Until then an attach is refused as above (the server
    // takes a moment to start), and tried again.
    vm.sh("(/bin/nixos-shell-guest serve-attach 2>/dev/null &)");
    let input = random_bytes(256 * 1024, 4);
    let mut again = fx.attach_piped(&["-c", "cat"]).finish(&input, STEP);
    for _ in 0..RETRIES {
        let stderr = text(&again.stderr);
        if !stderr.contains("attach again once it restarts") {
            break;
        }
        vm.sh("sleep 0.2");
        again = fx.attach_piped(&["-c", "cat"]).finish(&input, STEP);
    }
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(
        again.stdout == input,
        "{} bytes of {}",
        again.stdout.len(),
        input.len()
    );

    let after = Host::look(&vm);
    assert!(
        after.rss_kib <= before.rss_kib + GROWTH_KIB,
        "nixos-shell grew from {} KiB to {} KiB",
        before.rss_kib,
        after.rss_kib
    );
    // The resize port's thread is gone (its socket and its signal pipe):
    // no more descriptors than at the start.
    assert!(
        after.fds <= before.fds,
        "{} descriptors at the start, {} now: {:?}",
        before.fds,
        after.fds,
        open_fds(after.pid)
    );
    assert_eq!(zombie_children(after.pid), Vec::<u32>::new());
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
    assert!(
        same_settings(&vm_settings, &vm.pty().termios()),
        "the VM's terminal settings were not restored"
    );
    fx.assert_no_virtiofsd_left();
    assert_eq!(fx.nix.leftovers(), Vec::<String>::new(), "left in TMPDIR");
}

/// A VM whose `--command` streams through its ports while a session of
/// the guest's (started through an attach, and so hit itself) garbles the
/// attach port and starts the server again: the attaches end with one
/// line, the command's bytes come back exactly and its status with them,
/// and attach works again. (Its streams' ports cannot be taken while the
/// command runs: the guest's kernel lets one process open a port, and
/// what the command writes on them is its output, passed byte for byte.)
#[test]
fn a_command_runs_on_byte_for_byte_while_the_guest_garbles_the_attach_port() {
    let fx = Fixture::new(PATHS, Era::NineP);
    let mut vm = fx.start_piped(&["--command", "echo up; cat; exit 5"]);
    let mut stdin = vm.stdin();
    let mut stdout = BufReader::new(vm.stdout());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "up\n");
    let pid = vm.pid();
    let (rss_before, fds_before) = (rss_kib(pid), open_fds(pid).len());
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut all).unwrap();
        all
    });
    let input = random_bytes(2 * 1024 * 1024, 5);
    let first_half = input.len() / 2;
    std::io::Write::write_all(&mut stdin, &input[..first_half]).unwrap();

    let attach_garbage = fx.cwd().join("attach-garbage");
    let mut bytes = frame(18, 1, b"{not json");
    bytes.extend(frame(200, 0, b""));
    bytes.extend(random_bytes(GARBAGE, 6));
    std::fs::write(&attach_garbage, &bytes).unwrap();
    // The rogue outlives its own session (setsid): it kills the server,
    // as its unit's failure would, takes the port, then starts a server.
    let rogue = fx.cwd().join("rogue.sh");
    std::fs::write(
        &rogue,
        format!(
            "kill $(ps -o pid,args | grep '[s]erve-attach' | awk '{{print $1}}')\nsleep 1\n{}\ncat {} > $p\nexec /bin/nixos-shell-guest serve-attach 2>/dev/null\n",
            find_port("org.nixos-shell.attach"),
            attach_garbage.display()
        ),
    )
    .unwrap();
    let rogue = format!(
        "setsid sh {} </dev/null >/dev/null 2>&1 & sleep 600",
        rogue.display()
    );
    let mut hit = fx.attach_piped(&["-c", &rogue]);
    let status = hit.wait(STEP);
    let stderr = text(&hit.stderr());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the VM's attach server"), "{stderr}");

    // Attach works again once the server the rogue started says hello.
    let piped = random_bytes(256 * 1024, 7);
    let mut again = attach_cat(&fx, &piped);
    for _ in 0..RETRIES {
        if !text(&again.stderr).contains("attach again once it restarts") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        again = attach_cat(&fx, &piped);
    }
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(
        again.stdout == piped,
        "{} bytes of {}",
        again.stdout.len(),
        piped.len()
    );

    // The command it did not hit: the rest of its input, then its end.
    std::io::Write::write_all(&mut stdin, &input[first_half..]).unwrap();
    let (rss_after, fds_after) = (rss_kib(pid), open_fds(pid).len());
    drop(stdin);
    let status = vm.wait(BOOT_TIMEOUT);
    let out = reader.join().unwrap();
    assert_eq!(status.code(), Some(5), "{}", text(&vm.stderr()));
    assert!(
        out == input,
        "{} bytes of {} came back",
        out.len(),
        input.len()
    );
    assert!(
        rss_after <= rss_before + GROWTH_KIB,
        "nixos-shell grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(fds_after, fds_before, "descriptors");
    assert_eq!(zombie_children(pid), Vec::<u32>::new());
    fx.assert_no_virtiofsd_left();
    assert_eq!(fx.nix.leftovers(), Vec::<String>::new(), "left in TMPDIR");
}

/// `nixos-shell --attach -c cat` with `input`, to its end.
fn attach_cat(fx: &Fixture, input: &[u8]) -> crate::support::vm::Output {
    fx.attach_piped(&["-c", "cat"]).finish(input, STEP)
}
