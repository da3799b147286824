//! Ctrl-C while nixos-shell waits for a child (nix, the VM).
//!
//! The terminal sends SIGINT to the whole foreground process group: the
//! child gets it and stops. nixos-shell must survive it to clean up (the
//! private temp dir, the terminal) and exit 130. It installs a handler that
//! only notes the signal. Not `SIG_IGN`: an ignored signal stays ignored
//! across `exec`, so nix would no longer stop on Ctrl-C; a handler is reset
//! to the default in the child.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use signal_hook::consts::SIGINT;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the noting handler for SIGINT (idempotent).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // sigaction(2) refuses only a signal it does not know or one no
        // handler may take, and SIGINT is neither; were it to fail anyway,
        // Ctrl-C would end nixos-shell as it ends any program.
        let _ = signal_hook::flag::register(SIGINT, &INTERRUPTED);
    });
}

/// Whether SIGINT arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The conventional exit status after SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
