//! The console's window size, set from the host terminal's with TIOCSWINSZ
//! so full-screen programs fit without `resize`.

use anyhow::Context;
use camino::Utf8Path;
use rustix::fs::{Mode, OFlags};
use rustix::termios::{tcsetwinsize, Winsize};

use crate::schema::ports::TerminalSize;

pub fn set_size(console: &Utf8Path, size: TerminalSize) -> anyhow::Result<()> {
    // Without O_NOCTTY the console would become the guest role's own
    // controlling terminal, which the command run on it later takes.
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let tty = rustix::fs::open(console.as_std_path(), flags, Mode::empty())
        .with_context(|| format!("cannot open the console {console} to set its size"))?;
    let winsize = Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(&tty, winsize).with_context(|| {
        format!(
            "cannot set the size of {console} to {}x{}",
            size.cols, size.rows
        )
    })
}
