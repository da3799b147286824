//! The resize follower (`nixos-shell-guest --follow-resizes`): a service of
//! its own that lives as long as the VM, since the guest role itself ends
//! before the login. It reads the host terminal's sizes from the resize
//! port and sets each on the console, whose foreground program the kernel
//! then sends SIGWINCH.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use camino::Utf8Path;

use super::report::Reporter;
use super::{console, ports};
use crate::schema::ports::{Port, TerminalSize};

/// How long to wait before reading again once the port reads as closed:
/// the host's end may connect after the guest opened the port.
const RECONNECT: Duration = Duration::from_millis(250);

/// Follows the host terminal's size until the VM powers off; returns at
/// once when the host offers no resize port (a VM started without
/// nixos-shell, or without a terminal).
pub fn follow(console: &Utf8Path, reporter: &Reporter) -> u8 {
    let Some(device) = ports::wait_for(Port::Resize) else {
        reporter.say("no resize port; the console keeps its size");
        return 0;
    };
    let port = match File::open(&device) {
        Ok(port) => port,
        Err(err) => {
            reporter.warn(&format!("cannot open the resize port {device}: {err}"));
            return 0;
        }
    };
    let mut lines = BufReader::new(port);
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => std::thread::sleep(RECONNECT),
            Ok(_) => {
                if let Some(size) = TerminalSize::from_line(&line) {
                    reporter.check(console::set_size(console, size));
                }
            }
            Err(err) => {
                reporter.warn(&format!("cannot read the resize port {device}: {err}"));
                return 0;
            }
        }
    }
}
