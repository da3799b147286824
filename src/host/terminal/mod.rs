//! The controlling terminal: its settings, saved before QEMU (or an
//! attached session) takes it over in raw mode and restored once it is
//! done, whatever happened to it; its size, which the resize port hands to
//! the guest console; and [`terminfo`], its compiled entry.

pub mod terminfo;

use std::fs::File;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

use crate::schema::ports::TerminalSize;

/// Restores the saved terminal settings when dropped.
pub struct SavedTerminal {
    tty: File,
    termios: Termios,
}

/// Opens the controlling terminal, if there is one.
fn controlling_tty() -> Option<File> {
    File::options().read(true).write(true).open("/dev/tty").ok()
}

impl SavedTerminal {
    /// Saves the controlling terminal's settings; `None` without a terminal.
    pub fn save() -> Option<SavedTerminal> {
        let tty = controlling_tty()?;
        let termios = tcgetattr(&tty).ok()?;
        Some(SavedTerminal { tty, termios })
    }

    /// Saves the settings and puts the terminal in raw mode, as QEMU does
    /// with its console: every key, Ctrl-C included, goes to the program
    /// on the other side, which has a terminal of its own.
    pub fn raw() -> Option<SavedTerminal> {
        let saved = SavedTerminal::save()?;
        let mut raw = saved.termios.clone();
        raw.make_raw();
        tcsetattr(&saved.tty, OptionalActions::Now, &raw).ok()?;
        Some(saved)
    }
}

impl Drop for SavedTerminal {
    fn drop(&mut self) {
        // Nothing more can be done for a terminal that refuses its own
        // settings back.
        let _ = tcsetattr(&self.tty, OptionalActions::Now, &self.termios);
    }
}

/// Whether there is a controlling terminal.
pub fn exists() -> bool {
    controlling_tty().is_some()
}

/// The controlling terminal's size, if there is one with a known size.
pub fn size() -> Option<TerminalSize> {
    let ws = tcgetwinsize(controlling_tty()?).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some(TerminalSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}
