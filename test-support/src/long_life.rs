//! A long life of one VM, by counts: attaches one after another,
//! interactive attaches that resize, a storm of resizes of the VM's own
//! terminal, and bytes through an attached pipe each way, while the host's
//! nixos-shell is watched from outside (`vm::host_process`). The VM test
//! runs it short ([`Counts::SHORT`]); the benchmark's `long-life` section
//! runs it in full ([`Counts::FULL`]).
//!
//! Every check is a count or an equality: each session's output exact, the
//! host's descriptors at the end those of the start, its resident memory
//! within a tenth of what it was after the warm-up, no child left
//! unreaped. A failed check panics, as the fixtures do.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::vm::{open_fds, rss_kib, zombie_children, Console, BOOT_TIMEOUT};
use crate::vm_fixture::{Fixture, COLS, ROWS};

/// How long one step may take (far above what it takes).
const STEP: Duration = Duration::from_secs(120);

/// What the warm-up pipes each way: twice the attach protocol's window.
const WARM_UP_PIPED: usize = 8 * 1024 * 1024;

/// What a long life does.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// `nixos-shell --attach -c true`, one after another.
    pub attaches: usize,
    /// Interactive attaches, each resized and asked its size.
    pub interactive: usize,
    /// Resizes of the VM's own terminal, one after another at
    /// `resizes_per_second` (a pace, not a check).
    pub resizes: usize,
    pub resizes_per_second: u32,
    /// Bytes through an attached `cat`, into the VM and back out.
    pub piped: usize,
    /// How long the life lasts at least: once the counts are done,
    /// `--attach -c true` goes on until then (a length, not a check).
    pub at_least: Duration,
}

impl Counts {
    /// About a minute of work under TCG, for CI.
    pub const SHORT: Counts = Counts {
        attaches: 300,
        interactive: 20,
        resizes: 2000,
        resizes_per_second: 100,
        piped: 32 * 1024 * 1024,
        at_least: Duration::ZERO,
    };

    /// The long life: a thousand attaches, a hundred interactive
    /// ones, resizes at 100 per second for a minute, 256 MiB each way, in
    /// one VM for at least 15 minutes.
    pub const FULL: Counts = Counts {
        attaches: 1000,
        interactive: 100,
        resizes: 6000,
        resizes_per_second: 100,
        piped: 256 * 1024 * 1024,
        at_least: Duration::from_secs(15 * 60),
    };
}

/// What the host's nixos-shell was, at the start and at the end.
#[derive(Debug, Clone)]
pub struct Report {
    pub fds_start: usize,
    pub fds_end: usize,
    /// After the warm-up, and at the end, in KiB.
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    /// How long the life took, warm-up excluded.
    pub elapsed: Duration,
}

/// Lives the life of `counts` in a VM of `fx` that runs on `vm`'s
/// terminal (booted to its shell); `adjust` gives each `nixos-shell
/// --attach` its environment. Panics at the first check that fails.
pub fn live(
    fx: &Fixture,
    vm: &mut Console,
    counts: &Counts,
    adjust: &dyn Fn(Command) -> Command,
) -> Report {
    let pid = vm.pid();
    let fds_start = open_fds(pid);
    let attach = |args: &[&str]| adjust(fx.attach_command(args));
    // The warm-up: one of each, so what is allocated once is, and a pipe
    // of twice the attach protocol's window each way
    // (`schema::attach::WINDOW`, 4 MiB), so each of the relay's buffers,
    // bounded by the window, has reached its bound.
    for _ in 0..3 {
        attach_true(attach(&["-c", "true"]));
    }
    interactive(attach(&[]), 0);
    through_cat(attach(&["-c", "cat"]), WARM_UP_PIPED);
    let rss_start_kib = rss_kib(pid);
    let start = Instant::now();

    for _ in 0..counts.attaches {
        attach_true(attach(&["-c", "true"]));
    }
    for i in 0..counts.interactive {
        interactive(attach(&[]), i);
    }
    resize_storm(vm, counts);
    through_cat(attach(&["-c", "cat"]), counts.piped);
    while start.elapsed() < counts.at_least {
        attach_true(attach(&["-c", "true"]));
    }

    let elapsed = start.elapsed();
    let fds_end = descriptors_back(pid, fds_start.len());
    let rss_end_kib = rss_kib(pid);
    assert_eq!(
        fds_start.len(),
        fds_end.len(),
        "descriptors at the start: {fds_start:?}\nat the end: {fds_end:?}"
    );
    assert!(
        rss_end_kib <= rss_start_kib + rss_start_kib / 10,
        "nixos-shell grew from {rss_start_kib} KiB to {rss_end_kib} KiB"
    );
    assert_eq!(zombie_children(pid), Vec::<u32>::new(), "unreaped children");
    Report {
        fds_start: fds_start.len(),
        fds_end: fds_end.len(),
        rss_start_kib,
        rss_end_kib,
        elapsed,
    }
}

/// The descriptors of `pid` once they are `count` again, or after
/// [`STEP`]: the relay drops a client's connection on its own turn,
/// which may come a moment after the client has exited.
fn descriptors_back(pid: u32, count: usize) -> Vec<(u32, std::path::PathBuf)> {
    let deadline = Instant::now() + STEP;
    loop {
        let fds = open_fds(pid);
        if fds.len() == count || Instant::now() >= deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--attach -c true`: status 0, nothing said.
fn attach_true(mut command: Command) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "--attach -c true: {:?}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An interactive attach, the `i`th: resized twice, its size asked after
/// each, then left with `exit 0`.
fn interactive(command: Command, i: usize) {
    let mut terminal = Console::spawn_with(command, ROWS, COLS, None);
    terminal.wait_for_shell();
    for step in 0..2u16 {
        let (rows, cols) = (20 + (i % 10) as u16 + step, 70 + (i % 30) as u16 + step);
        terminal.resize(rows, cols);
        let (size, _) = terminal.sh("stty size");
        assert!(
            size.trim_end().ends_with(&format!("\n{rows} {cols}")),
            "attach {i}: {size:?}"
        );
    }
    terminal.send("exit 0\n");
    assert_eq!(
        terminal.wait(STEP).code(),
        Some(0),
        "attach {i}: {}",
        terminal.transcript()
    );
}

/// Resizes the VM's terminal `counts.resizes` times at the pace asked,
/// then asks the console its size: the last one.
fn resize_storm(vm: &mut Console, counts: &Counts) {
    let pace = Duration::from_secs(1) / counts.resizes_per_second.max(1);
    let mut last = (ROWS, COLS);
    for i in 0..counts.resizes {
        last = (20 + (i % 40) as u16, 60 + (i % 90) as u16);
        vm.resize(last.0, last.1);
        std::thread::sleep(pace);
    }
    // The sizes come in order; the last one applied is the latest.
    let (rows, cols) = last;
    let (size, status) = vm.sh("stty size");
    assert_eq!(status, 0, "{size}");
    assert!(
        size.trim_end().ends_with(&format!("\n{rows} {cols}")),
        "the console is not at the last size {rows} {cols}: {size:?}"
    );
    vm.resize(ROWS, COLS);
    let _ = vm.sh("true");
}

/// `len` bytes that look random through an attached `cat` and back,
/// compared as they come, never held whole.
fn through_cat(mut command: Command, len: usize) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || {
        let mut bytes = Bytes::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            bytes.fill(&mut chunk[..n]);
            stdin.write_all(&chunk[..n]).expect("write to the attach");
            left -= n;
        }
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut expected = Bytes::new();
    let mut got = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut seen = 0;
    loop {
        let n = stdout.read(&mut got).expect("read the attach's output");
        if n == 0 {
            break;
        }
        expected.fill(&mut want[..n]);
        assert!(
            got[..n] == want[..n],
            "the output differs within bytes {seen}..{}",
            seen + n
        );
        seen += n;
    }
    writer.join().expect("the writer");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr);
    let status = child.wait().expect("wait for the attach");
    assert_eq!(seen, len, "bytes back of {len}; stderr: {stderr}");
    assert!(status.success(), "{status:?}; stderr: {stderr}");
}

/// A stream of bytes that look random, the same every time.
struct Bytes(u64);

impl Bytes {
    fn new() -> Bytes {
        Bytes(0x9e37_79b9_7f4a_7c15)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = (self.0 >> 24) as u8;
        }
    }
}

/// Boots `fx`'s VM on a terminal and waits for its shell.
pub fn boot(fx: &Fixture, adjust: &dyn Fn(Command) -> Command) -> Console {
    let mut vm = Console::spawn(adjust(fx.command(&[])), ROWS, COLS);
    vm.wait_for_shell();
    vm
}

/// Powers the VM off from its console: status 0.
pub fn power_off(mut vm: Console) {
    vm.send("poweroff\n");
    assert_eq!(vm.wait(BOOT_TIMEOUT).code(), Some(0), "{}", vm.transcript());
}
