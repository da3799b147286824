//! nix's stderr on its way to the user.
//!
//! nixos-shell reads nix's stderr instead of letting nix inherit it: the
//! error nix ends with decides what happens next (see `command::NixBuild::run`).
//! nix draws its progress bar only when its stderr is a terminal, so when
//! ours is one, nix gets a pseudo-terminal of the same size as its stderr
//! ([`spawn`]); otherwise a pipe. Either way the bytes reach our stderr as
//! they come ([`Forward`]), except that everything from the first line
//! starting with `error:` on is held back ([`Filter`]) for the caller to
//! judge.

use std::io::{IsTerminal, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::io::{fcntl_setfd, FdFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{
    tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, OutputModes,
};

/// How the line that ends a failed nix run starts.
const ERROR: &str = "error:";

/// Starts `command` with its stderr on a pseudo-terminal when ours is a
/// terminal, else on a pipe; returns the child and the other end of its
/// stderr. The command is consumed so that its copy of the terminal's child
/// side is closed once nix has started: only then does reading end when nix
/// (and whatever inherited its stderr) is gone.
pub fn spawn(mut command: Command) -> std::io::Result<(Child, OwnedFd)> {
    let terminal = std::io::stderr().is_terminal();
    if let Some((master, slave)) = terminal.then(open_pty).flatten() {
        command.stderr(Stdio::from(slave));
        let child = command.spawn()?;
        drop(command);
        return Ok((child, master));
    }
    command.stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| std::io::Error::other("nix's stderr pipe is missing"))?;
    Ok((child, stderr.into()))
}

/// A pseudo-terminal (master, slave) sized like our stderr, passing bytes
/// through unchanged (no `\n` -> `\r\n`: our own terminal does that), both
/// ends closed on exec. `None` when the system has none to give.
fn open_pty() -> Option<(OwnedFd, OwnedFd)> {
    let (master, slave) = open_pty_pair().ok()?;
    // Like openpty(3), a size or mode the slave refuses leaves it as the
    // system made it: nix still runs, only its progress bar may look off.
    if let Ok(size) = tcgetwinsize(std::io::stderr()) {
        let _ = tcsetwinsize(&slave, size);
    }
    if let Ok(mut termios) = tcgetattr(&slave) {
        termios.output_modes.remove(OutputModes::OPOST);
        let _ = tcsetattr(&slave, OptionalActions::Now, &termios);
    }
    Some((master, slave))
}

/// openpty(3) without its options: a new master and its slave, neither
/// becoming our controlling terminal.
fn open_pty_pair() -> rustix::io::Result<(OwnedFd, OwnedFd)> {
    // Not every system's posix_openpt takes O_CLOEXEC, so it is set after.
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    fcntl_setfd(&master, FdFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let slave = rustix::fs::open(name.as_c_str(), flags, Mode::empty())?;
    Ok((master, slave))
}

/// nix's stderr passed on to `sink` through a [`Filter`], chunk by chunk.
pub struct Forward<W: Write> {
    filter: Filter,
    sink: W,
}

impl<W: Write> Forward<W> {
    pub fn new(sink: W) -> Forward<W> {
        Forward {
            filter: Filter::default(),
            sink,
        }
    }

    /// Shows what of `bytes` is to be shown now; a sink that fails only
    /// loses what nix says.
    pub fn feed(&mut self, bytes: &[u8]) {
        let _ = self.sink.write_all(&self.filter.feed(bytes));
    }

    /// At the end of the stream: shows the rest and returns the bytes held
    /// back.
    pub fn finish(mut self) -> Vec<u8> {
        let (rest, held) = self.filter.finish();
        let _ = self.sink.write_all(&rest);
        held
    }
}

/// Splits nix's stderr into what to show now and what to hold back: from
/// the first segment whose text (colours removed, leading blanks skipped)
/// starts with `error:`. Segments end at `\n` or `\r` (the progress bar
/// redraws its line after `\r`). A segment that might still become
/// `error:` waits for more bytes; any other is shown at once, so the
/// progress bar moves.
#[derive(Debug, Default)]
pub struct Filter {
    /// Bytes not shown yet, from a segment start unless `mid_segment`.
    pending: Vec<u8>,
    /// The first pending segment began in bytes already shown.
    mid_segment: bool,
    held: Option<Vec<u8>>,
}

impl Filter {
    /// Takes the next bytes; returns those to show now.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if let Some(held) = &mut self.held {
            held.extend_from_slice(bytes);
            return Vec::new();
        }
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let end = self.pending[start..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| start + i);
            let text = plain(&self.pending[start..end.unwrap_or(self.pending.len())]);
            let text = text.trim_start();
            let decided = start == 0 && self.mid_segment;
            if !decided && text.starts_with(ERROR) {
                self.held = Some(self.pending.split_off(start));
                self.mid_segment = false;
                return std::mem::take(&mut self.pending);
            }
            match end {
                Some(end) => start = end + 1,
                None => {
                    let undecided = !decided && ERROR.starts_with(text);
                    let show = if undecided { start } else { self.pending.len() };
                    self.mid_segment = show > start;
                    return self.pending.drain(..show).collect();
                }
            }
        }
    }

    /// At the end: the bytes still to show and the bytes held back.
    pub fn finish(self) -> (Vec<u8>, Vec<u8>) {
        (self.pending, self.held.unwrap_or_default())
    }
}

/// The text of held-back bytes as lines, for matching: split at `\n` and
/// `\r`, colours removed, empty ones dropped.
pub fn held_lines(held: &[u8]) -> Vec<String> {
    held.split(|&b| b == b'\n' || b == b'\r')
        .map(plain)
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// Bytes as text without ANSI escape sequences (`ESC [ ... letter`).
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&str]) -> (String, String) {
        let mut filter = Filter::default();
        let mut shown = Vec::new();
        for chunk in chunks {
            shown.extend(filter.feed(chunk.as_bytes()));
        }
        let (rest, held) = filter.finish();
        shown.extend(rest);
        (
            String::from_utf8(shown).unwrap(),
            String::from_utf8(held).unwrap(),
        )
    }

    #[test]
    fn the_progress_bar_is_shown_as_it_comes() {
        let mut filter = Filter::default();
        let bar = "\r\u{1b}[K[0/1 built] building nixos-shell-vm";
        assert_eq!(filter.feed(bar.as_bytes()), bar.as_bytes());
        let redraw = "\r\u{1b}[K[1/0/1 built]";
        assert_eq!(filter.feed(redraw.as_bytes()), redraw.as_bytes());
        assert_eq!(filter.feed(b"\r\x1b[K"), b"\r");
        assert_eq!(filter.finish(), (b"\x1b[K".to_vec(), Vec::new()));
    }

    #[test]
    fn holds_back_from_the_first_error_line() {
        let text = "building x\n\u{1b}[31;1merror:\u{1b}[0m flake 'p' does not provide attribute 'a'\n  Did you mean vm?\n";
        let (shown, held) = feed_all(&[text]);
        assert_eq!(shown, "building x\n");
        assert_eq!(
            held_lines(held.as_bytes()),
            [
                "error: flake 'p' does not provide attribute 'a'",
                "  Did you mean vm?"
            ]
        );
    }

    #[test]
    fn an_error_split_across_reads_after_the_bar_is_held_back() {
        let (shown, held) = feed_all(&["[1/2 built]\r\u{1b}[Ker", "ror: nixos-shell: no", " vm\n"]);
        assert_eq!(shown, "[1/2 built]\r");
        assert_eq!(held, "\u{1b}[Kerror: nixos-shell: no vm\n");
        assert_eq!(held_lines(held.as_bytes()), ["error: nixos-shell: no vm"]);
    }

    #[test]
    fn error_inside_a_shown_line_is_not_an_error_line() {
        let (shown, held) = feed_all(&["warning: ", "error: is a word here\n", "ok\n"]);
        assert_eq!(shown, "warning: error: is a word here\nok\n");
        assert_eq!(held, "");
        let (shown, held) = feed_all(&["e", "rr", "x\n"]);
        assert_eq!((shown.as_str(), held.as_str()), ("errx\n", ""));
    }

    #[test]
    fn forward_shows_what_comes_and_returns_the_held_bytes() {
        let mut shown = Vec::new();
        let mut forward = Forward::new(&mut shown);
        for chunk in ["cop", "ying\ner", "ror: x\n"] {
            forward.feed(chunk.as_bytes());
        }
        let held = forward.finish();
        assert_eq!(shown, b"copying\n");
        assert_eq!(held, b"error: x\n");
    }
}
