//! A process (the CLI) whose standard streams are pipes, in a session of
//! its own without any terminal: nixos-shell in a script's pipeline. Its
//! process group is killed on drop, so no QEMU outlives a failed test.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::slots::Permit;

/// What a piped process gave.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

pub struct Piped {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
    _permit: Option<Permit>,
}

impl Piped {
    /// Starts `command` with piped standard streams in a new session (no
    /// controlling terminal). Waits for a VM slot first.
    pub fn spawn(command: Command) -> Piped {
        Piped::spawn_with(command, Some(Permit::acquire(1)))
    }

    /// [`Piped::spawn`] under slots the caller holds, or none for a
    /// process that starts no VM (`nixos-shell --attach`).
    pub fn spawn_with(mut command: Command, permit: Option<Permit>) -> Piped {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setsid(2) only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all);
            all
        });
        Piped {
            child,
            stderr: Some(stderr),
            _permit: permit,
        }
    }

    /// The process id of what runs (nixos-shell).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's standard input, to write to and close at will.
    pub fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin is taken once")
    }

    /// The process's standard output, to read at will.
    pub fn stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout is taken once")
    }

    /// Writes `input` and closes standard input (unless taken), reads
    /// standard output to its end, and waits for the process; fails the
    /// test after `timeout`.
    pub fn finish(mut self, input: &[u8], timeout: Duration) -> Output {
        if let Some(mut stdin) = self.child.stdin.take() {
            let input = input.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let stdout = self.child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut all = Vec::new();
                let _ = out.read_to_end(&mut all);
                all
            })
        });
        let status = self.wait(timeout);
        Output {
            status,
            stdout: stdout
                .map(|t| t.join().expect("stdout reader"))
                .unwrap_or_default(),
            stderr: self.stderr(),
        }
    }

    /// Waits for the process; fails the test after `timeout`, with what it
    /// said on stderr.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "the process did not end within {timeout:?}; its stderr:\n{}",
                    String::from_utf8_lossy(&self.stderr())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything it wrote to stderr; once it has ended.
    pub fn stderr(&mut self) -> Vec<u8> {
        self.stderr
            .take()
            .map(|t| t.join().expect("stderr reader"))
            .unwrap_or_default()
    }

    fn kill(&mut self) {
        // The whole session: the CLI's QEMU lives in it too.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: signals the process group this started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
