//! Messages of the guest role, for whoever watches the console.
//!
//! They go to stderr. Under systemd stderr is usually the journal, so they
//! are copied to the console device too; when stderr already is a terminal
//! (a plain init, the tests' initramfs) they are written once.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};

use camino::{Utf8Path, Utf8PathBuf};

pub struct Reporter {
    console: Option<Utf8PathBuf>,
}

impl Reporter {
    pub fn new(console: &Utf8Path) -> Reporter {
        let copy_to_console = !std::io::stderr().is_terminal();
        Reporter {
            console: copy_to_console.then(|| console.to_owned()),
        }
    }

    /// Reports progress.
    pub fn say(&self, message: &str) {
        self.emit(&format!("nixos-shell-guest: {message}"));
    }

    /// Reports a failed step; the role goes on.
    pub fn warn(&self, message: &str) {
        self.emit(&format!("nixos-shell-guest: warning: {message}"));
    }

    /// Reports the error of a step, if any.
    pub fn check(&self, result: anyhow::Result<()>) {
        if let Err(err) = result {
            self.warn(&format!("{err:#}"));
        }
    }

    fn emit(&self, line: &str) {
        eprintln!("{line}");
        if let Some(console) = &self.console {
            if let Ok(mut tty) = OpenOptions::new().write(true).open(console) {
                let _ = writeln!(tty, "{line}\r");
            }
        }
    }
}
