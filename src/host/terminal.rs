//! The controlling terminal: its settings, saved before QEMU takes it over
//! (raw mode) and restored once QEMU is gone, whatever happened to it; and
//! its size, handed to the guest console.

use std::fs::File;
use std::os::fd::AsRawFd;

use crate::schema::facts::TerminalSize;

/// Restores the saved terminal settings when dropped.
pub struct SavedTerminal {
    tty: File,
    termios: libc::termios,
}

/// Opens the controlling terminal, if there is one.
fn controlling_tty() -> Option<File> {
    File::options().read(true).write(true).open("/dev/tty").ok()
}

impl SavedTerminal {
    /// Saves the controlling terminal's settings; `None` without a terminal.
    pub fn save() -> Option<SavedTerminal> {
        let tty = controlling_tty()?;
        // SAFETY: tcgetattr fills the zeroed struct for a descriptor we own.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut termios) };
        (rc == 0).then_some(SavedTerminal { tty, termios })
    }
}

impl Drop for SavedTerminal {
    fn drop(&mut self) {
        // SAFETY: restores settings read from the same descriptor.
        unsafe {
            libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, &self.termios);
        }
    }
}

/// The controlling terminal's size, if there is one with a known size.
pub fn size() -> Option<TerminalSize> {
    let tty = controlling_tty()?;
    // SAFETY: TIOCGWINSZ fills a winsize struct for a descriptor we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(TerminalSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}
