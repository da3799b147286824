//! The console's window size, set from the host terminal's with TIOCSWINSZ
//! so full-screen programs fit without `resize`.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::Context;
use camino::Utf8Path;

use crate::schema::facts::TerminalSize;

pub fn set_size(console: &Utf8Path, size: TerminalSize) -> anyhow::Result<()> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(console)
        .with_context(|| format!("cannot open the console {console} to set its size"))?;
    let winsize = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the fd is open for the duration of the call and `winsize` is
    // the structure TIOCSWINSZ reads.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        anyhow::bail!(
            "cannot set the size of {console} to {}x{}: {err}",
            size.cols,
            size.rows
        );
    }
    Ok(())
}
