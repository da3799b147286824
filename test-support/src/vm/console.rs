//! A process (the run script, or the CLI) on a fresh pseudo-terminal: a VM's
//! console as the user sees it. [`Console`] records what the terminal shows,
//! types into it, runs shell commands in the guest and kills its process
//! group on drop, so no QEMU or virtiofsd outlives a failed test.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::slots::Permit;
use super::{BOOT_TIMEOUT, SHELL_READY, STEP_TIMEOUT};

/// A pseudo-terminal pair.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

impl Pty {
    /// Opens a pair whose window is `rows` x `cols`.
    pub fn open(rows: u16, cols: u16) -> Pty {
        let mut master = -1;
        let mut slave = -1;
        let winsize = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers are valid; name and termios may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &winsize,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // openpty(3) makes both inheritable: nixos-shell and QEMU would hold
        // the master, so a test process that dies (a panic that aborts, a
        // kill) would leave a terminal that never hangs up and a VM that
        // never ends. The child gets the slave as its standard streams.
        for fd in [master, slave] {
            // SAFETY: fd is one of the descriptors openpty just returned.
            let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
        }
        // SAFETY: openpty returned two fresh descriptors we now own.
        unsafe {
            Pty {
                master: OwnedFd::from_raw_fd(master),
                slave: OwnedFd::from_raw_fd(slave),
            }
        }
    }

    /// The terminal's current settings.
    pub fn termios(&self) -> libc::termios {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and pointer.
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut termios) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        termios
    }
}

/// Whether two settings of a terminal are the same as far as a user can
/// tell: the modes, control characters and speeds.
pub fn same_settings(a: &libc::termios, b: &libc::termios) -> bool {
    a.c_iflag == b.c_iflag
        && a.c_oflag == b.c_oflag
        && a.c_cflag == b.c_cflag
        && a.c_lflag == b.c_lflag
        && a.c_cc == b.c_cc
        && a.c_ispeed == b.c_ispeed
        && a.c_ospeed == b.c_ospeed
}

type Transcript = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// A process running on a pseudo-terminal: a VM's console as the user sees it.
pub struct Console {
    child: Option<Child>,
    pty: Pty,
    writer: File,
    transcript: Transcript,
    /// Where the next [`Console::expect`] starts looking.
    cursor: usize,
    steps: usize,
    status: Option<ExitStatus>,
    _permit: Option<Permit>,
}

impl Console {
    /// Starts `command` in a new session whose controlling terminal is a
    /// fresh `rows` x `cols` pseudo-terminal. Waits for a VM slot first.
    pub fn spawn(command: Command, rows: u16, cols: u16) -> Console {
        Console::spawn_with(command, rows, cols, Some(Permit::acquire(1)))
    }

    /// [`Console::spawn`] under slots the caller already holds (`None`: a
    /// permit held by another console of the same test covers it).
    pub fn spawn_with(command: Command, rows: u16, cols: u16, permit: Option<Permit>) -> Console {
        Console::spawn_on(Pty::open(rows, cols), command, permit)
    }

    /// [`Console::spawn_with`] on a terminal the caller opened (e.g. to read
    /// its settings before anything ran on it).
    pub fn spawn_on(pty: Pty, mut command: Command, permit: Option<Permit>) -> Console {
        let slave = |pty: &Pty| Stdio::from(pty.slave.try_clone().expect("dup the pty"));
        command
            .stdin(slave(&pty))
            .stdout(slave(&pty))
            .stderr(slave(&pty));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let transcript: Transcript = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = File::from(pty.master.try_clone().expect("dup the pty master"));
        let writer = File::from(pty.master.try_clone().expect("dup the pty master"));
        let sink = Arc::clone(&transcript);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let (lock, ready) = &*sink;
                        lock.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]);
                        ready.notify_all();
                    }
                }
            }
        });
        Console {
            child: Some(child),
            pty,
            writer,
            transcript,
            cursor: 0,
            steps: 0,
            status: None,
            _permit: permit,
        }
    }

    /// The process id of what runs on the terminal (nixos-shell).
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the child is there until drop")
            .id()
    }

    /// Everything the terminal showed so far.
    pub fn transcript(&self) -> String {
        let (lock, _) = &*self.transcript;
        String::from_utf8_lossy(&lock.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The pseudo-terminal, e.g. to compare its settings.
    pub fn pty(&self) -> &Pty {
        &self.pty
    }

    /// Waits until `needle` appears after the previous match and returns the
    /// output up to and including it; fails the test after `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        self.expect_unless_ended(needle, timeout)
            .unwrap_or_else(|reason| panic!("{reason}"))
    }

    /// [`Console::expect`], but a process that ended without printing
    /// `needle` is an `Err` saying so, for a caller that tries again; fails
    /// the test after `timeout`.
    pub fn expect_unless_ended(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        // A process that ended will print nothing more: fail once its last
        // output has been read rather than at the deadline, so a VM that
        // QEMU refused to start costs seconds, not the boot timeout.
        const POLL: Duration = Duration::from_millis(200);
        const DRAIN: Duration = Duration::from_secs(2);
        let deadline = Instant::now() + timeout;
        let transcript = Arc::clone(&self.transcript);
        let (lock, ready) = &*transcript;
        let mut data = lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut ended: Option<(ExitStatus, Instant)> = None;
        loop {
            if let Some(pos) = find(&data[self.cursor..], needle.as_bytes()) {
                let end = self.cursor + pos + needle.len();
                let seen = String::from_utf8_lossy(&data[self.cursor..end]).into_owned();
                self.cursor = end;
                return Ok(seen);
            }
            let now = Instant::now();
            let text = || String::from_utf8_lossy(&data).into_owned();
            match ended {
                Some((status, at)) if now >= at + DRAIN => {
                    return Err(format!(
                        "the process ended ({status}) waiting for {needle:?}; the terminal showed:\n{}",
                        text()
                    ));
                }
                _ if now >= deadline => {
                    let text = text();
                    drop(data);
                    panic!("timed out after {timeout:?} waiting for {needle:?}; the terminal showed:\n{text}");
                }
                _ => {}
            }
            data = ready
                .wait_timeout(data, (deadline - now).min(POLL))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if ended.is_none() {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    ended = Some((status, Instant::now()));
                }
            }
        }
    }

    /// Resizes the terminal, as a terminal emulator does: the kernel sends
    /// SIGWINCH to the process in front (nixos-shell).
    pub fn resize(&self, rows: u16, cols: u16) {
        let winsize = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: a valid fd and pointer.
        let rc = unsafe { libc::ioctl(self.pty.master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Types `text` into the terminal, a few bytes at a time: QEMU's
    /// multiplexed console (`-chardev stdio,mux=on`) queues input for a
    /// guest that has not taken it yet in a ring of 32 bytes and
    /// overwrites it when more come (chardev/char-mux.c, `MUX_BUFFER_SIZE`),
    /// so a long line typed at once into a busy guest loses characters.
    /// Each chunk waits until the terminal shows something new (the guest's
    /// echo), or a moment for a program that does not echo.
    pub fn send(&mut self, text: &str) {
        const CHUNK: usize = 16;
        const ECHO_WAIT: Duration = Duration::from_secs(2);
        let bytes = text.as_bytes();
        for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
            let (lock, ready) = &*self.transcript;
            let shown = lock.lock().unwrap_or_else(|e| e.into_inner()).len();
            self.writer
                .write_all(chunk)
                .and_then(|()| self.writer.flush())
                .expect("write to the pty");
            if (n + 1) * CHUNK >= bytes.len() {
                break;
            }
            let deadline = Instant::now() + ECHO_WAIT;
            let mut data = lock.lock().unwrap_or_else(|e| e.into_inner());
            while data.len() == shown && Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                data = ready
                    .wait_timeout(data, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    /// Waits for the guest's login shell.
    pub fn wait_for_shell(&mut self) {
        self.expect(SHELL_READY, BOOT_TIMEOUT);
    }

    /// [`Console::wait_for_shell`], but a process that ended first is an
    /// `Err` saying so.
    pub fn wait_for_shell_unless_ended(&mut self) -> Result<(), String> {
        self.expect_unless_ended(SHELL_READY, BOOT_TIMEOUT)
            .map(drop)
    }

    /// Runs `command` in the guest's shell; returns what it printed and its
    /// exit status.
    pub fn sh(&mut self, command: &str) -> (String, i32) {
        self.steps += 1;
        let n = self.steps;
        // The marker is split in the typed line, so only the output matches.
        self.send(&format!("{command}; printf '@@%s:%s@@\\n' {n} $?\n"));
        let marker_start = format!("@@{n}:");
        let seen = self.expect(&marker_start, STEP_TIMEOUT);
        let rest = self.expect("@@", STEP_TIMEOUT);
        let status = rest
            .trim_end_matches("@@")
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("unexpected status {rest:?} of {command:?}"));
        let output = seen.trim_end_matches(marker_start.as_str()).to_owned();
        (output, status)
    }

    /// Waits for the process to end; fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the child is there until drop");
        loop {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the process did not end within {timeout:?}; the terminal showed:\n{}",
                    self.transcript()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The whole session: the CLI's QEMU lives in it too.
            let pgid = child.id() as libc::pid_t;
            // SAFETY: signals the process group this console started.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: openpty's descriptors were inheritable, so each process
    /// a test started (nixos-shell, and QEMU after it) held the test's
    /// terminal master; a test process that died left a terminal that never
    /// hung up, and its VMs ran on.
    #[test]
    fn the_child_holds_no_terminal_master() {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "ls -l /proc/self/fd/; echo listed-fds"]);
        let mut console = Console::spawn_with(command, 24, 80, None);
        console.expect("listed-fds", Duration::from_secs(10));
        assert!(console.wait(Duration::from_secs(10)).success());
        let listing = console.transcript();
        assert!(listing.contains("/dev/pts/"), "{listing}");
        assert!(!listing.contains("ptmx"), "{listing}");
    }
}
