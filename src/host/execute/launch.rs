//! Running the VM command: the edge where the composed [`VmCommand`]
//! becomes QEMU's process. Its console is this terminal, or a log file when
//! `--command`'s streams are nixos-shell's own ([`Console`]). The terminal's
//! settings are saved before QEMU puts it in raw mode and restored after,
//! whatever happened; signals sent to nixos-shell reach the VM (`signals`),
//! and the VM dies with nixos-shell.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use camino::Utf8Path;
use rustix::io::{fcntl_getfd, fcntl_setfd, FdFlags};

use crate::host::compose::command::VmCommand;
use crate::host::signals;
use crate::host::stop::Stop;
use crate::host::terminal;

/// Where the VM's console (QEMU's standard input and output, which the
/// module gives the guest console and the monitor) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console<'a> {
    /// nixos-shell's own: the terminal.
    Terminal,
    /// Written to this file, with an input that never ends and never says
    /// anything: the boot messages stay out of the command's output.
    Log(&'a Utf8Path),
    /// A detached VM's: written to this file, bounded ([`BoundedLog`]),
    /// with an input that never ends.
    Detached(&'a Utf8Path),
}

/// The most a detached VM's console log holds before it starts again,
/// the full one kept beside it as `.old`: at most twice this on disk.
pub const CONSOLE_LOG_LIMIT: u64 = 1024 * 1024;

/// A console log that starts again once it holds [`CONSOLE_LOG_LIMIT`].
struct BoundedLog<'a> {
    path: &'a Utf8Path,
    file: File,
    written: u64,
}

impl BoundedLog<'_> {
    fn take(&mut self, bytes: &[u8]) {
        if self.written + bytes.len() as u64 > CONSOLE_LOG_LIMIT {
            let old = format!("{}.old", self.path);
            if std::fs::rename(self.path, &old).is_ok() {
                if let Ok(file) = File::create(self.path) {
                    // Locked as the first one is (`host::detach`), for as
                    // long as this VM runs: another VM leaves it alone.
                    let _ = rustix::fs::flock(
                        &file,
                        rustix::fs::FlockOperation::NonBlockingLockExclusive,
                    );
                    self.file = file;
                    self.written = 0;
                }
            }
        }
        // A full disk loses console lines, not the VM.
        if std::io::Write::write_all(&mut self.file, bytes).is_ok() {
            self.written += bytes.len() as u64;
        }
    }
}

/// Runs the VM: `None` once QEMU exits 0, else how it stopped (a signal
/// nixos-shell caught and passed on counts as that signal, whatever QEMU
/// made of it). `disk_lock` is the lock of its disk image: the VM inherits
/// it, so the lock lasts as long as QEMU does, even past nixos-shell.
pub fn start(
    command: &VmCommand,
    disk_lock: Option<&File>,
    console: Console,
) -> Result<Option<Stop>> {
    if let Some(lock) = disk_lock {
        let flags = fcntl_getfd(lock).context("could not read the disk lock's flags")?;
        fcntl_setfd(lock, flags - FdFlags::CLOEXEC)
            .context("could not hand the disk lock to the VM")?;
    }
    let saved = terminal::SavedTerminal::save();
    let mut vm = Command::new(&command.program);
    vm.args(&command.args).envs(&command.env);
    let mut bounded = None;
    match console {
        Console::Terminal => {}
        Console::Log(log) => {
            let log = File::create(log).with_context(|| format!("could not create {log}"))?;
            vm.stdin(Stdio::piped()).stdout(log);
        }
        Console::Detached(path) => {
            // Appended to: the holder's own messages go there too.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("could not open {path}"))?;
            let written = file.metadata().map_or(0, |m| m.len());
            bounded = Some(BoundedLog {
                path,
                file,
                written,
            });
            vm.stdin(Stdio::piped()).stdout(Stdio::piped());
        }
    }
    signals::die_with_parent(&mut vm);
    // The console's input, held open until QEMU ends (an end of file would
    // close the console's host side).
    let status = vm
        .spawn()
        .and_then(|mut child| {
            let _input = child.stdin.take();
            let output = child.stdout.take();
            let _noted = signals::note_vm(&child);
            match (output, bounded.as_mut()) {
                (Some(output), Some(log)) => {
                    let mut take = |bytes: &[u8]| log.take(bytes);
                    let stream = signals::Stream::new(output.as_fd(), &mut take);
                    signals::wait_reading(&mut child, &mut [stream])
                }
                _ => signals::wait(&mut child),
            }
        })
        .with_context(|| format!("could not run {}", command.program));
    drop(saved);
    let status = status?;
    Ok(signals::received().map(Stop::Signal).or(Stop::of(status)))
}

/// What to say when QEMU ended with a failure `status`: QEMU said why
/// above; a disk image it could not use (corrupt, locked, not qcow2) is the
/// usual cause, with a way out that loses nothing.
pub fn failure_hint(status: u8, disk_image: Option<&Utf8Path>) -> String {
    let mut hint = format!("QEMU failed (status {status}); its message is above");
    if let Some(image) = disk_image {
        hint.push_str(&format!(
            "; if it is about the disk image, check it with `qemu-img check {}`, or run with --ephemeral",
            crate::sh::quote(image.as_str())
        ));
    }
    hint
}

impl Console<'_> {
    /// For a command that ended without its status: the last `lines` lines
    /// of a logged console on stderr, since what the guest said is the only
    /// clue. A console in the terminal has shown them already.
    pub fn show_tail(&self, lines: usize) {
        if let Console::Log(log) | Console::Detached(log) = self {
            eprintln!(
                "nixos-shell: the VM's console ended with:\n{}",
                tail(log, lines)
            );
        }
    }
}

/// The most of the console log [`tail`] reads: its end, where the lines it
/// shows are. The guest wrote the log, as much as it liked.
const TAIL_BYTES: u64 = 64 * 1024;

/// The last `lines` lines of the file `log`, without the console's CRs.
pub fn tail(log: &Utf8Path, lines: usize) -> String {
    File::open(log)
        .map(|file| tail_of(file, lines))
        .unwrap_or_default()
}

/// The last `lines` lines of `log` within its last [`TAIL_BYTES`] (an
/// open file is read so too: `&File`).
pub fn tail_of(mut log: impl Read + Seek, lines: usize) -> String {
    let start = log
        .seek(SeekFrom::End(0))
        .map_or(0, |len| len.saturating_sub(TAIL_BYTES));
    let mut text = Vec::new();
    if log.seek(SeekFrom::Start(start)).is_err()
        || log.take(TAIL_BYTES).read_to_end(&mut text).is_err()
    {
        return String::new();
    }
    // A line cut by the start is not shown.
    let whole = match text.iter().position(|&b| b == b'\n') {
        Some(end) if start > 0 => &text[end + 1..],
        _ => &text[..],
    };
    let text = String::from_utf8_lossy(whole);
    let all: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_the_last_lines_without_carriage_returns() {
        let dir = tempfile::tempdir().unwrap();
        let log = Utf8Path::from_path(dir.path()).unwrap().join("console.log");
        std::fs::write(&log, "one\r\ntwo\r\nthree\r\n").unwrap();
        assert_eq!(tail(&log, 2), "two\nthree");
        assert_eq!(tail(&log, 5), "one\ntwo\nthree");
        assert_eq!(tail(&log.with_extension("missing"), 2), "");
    }

    #[test]
    fn the_tail_of_a_long_log_reads_only_its_end() {
        /// A log that counts what is read of it.
        struct Counted<'a>(std::io::Cursor<Vec<u8>>, &'a std::cell::Cell<u64>);
        impl Read for Counted<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1.set(self.1.get() + n as u64);
                Ok(n)
            }
        }
        impl Seek for Counted<'_> {
            fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
                self.0.seek(to)
            }
        }
        // Before, the whole log was read: a guest that wrote gigabytes to
        // its console made nixos-shell hold them to show three lines.
        let mut text = "noise\r\n".repeat(2 << 20).into_bytes();
        text.extend_from_slice(b"one\r\ntwo\r\n");
        let read = std::cell::Cell::new(0);
        let log = Counted(std::io::Cursor::new(text), &read);
        assert_eq!(tail_of(log, 3), "noise\none\ntwo");
        assert!(read.get() <= TAIL_BYTES, "read {} bytes", read.get());
    }
}
