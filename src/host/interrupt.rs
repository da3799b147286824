//! Ctrl-C while nixos-shell waits for a child (nix, the VM).
//!
//! The terminal sends SIGINT to the whole foreground process group: the
//! child gets it and stops. nixos-shell must survive it to clean up (the
//! private temp dir, the terminal) and exit 130. It installs a handler that
//! only notes the signal. Not `SIG_IGN`: an ignored signal stays ignored
//! across `exec`, so nix would no longer stop on Ctrl-C; a handler is reset
//! to the default in the child.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the noting handler for SIGINT (idempotent).
pub fn install() {
    // SAFETY: `note` is async-signal-safe (one atomic store); the sigaction
    // struct is zeroed and then filled in completely before use.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Whether SIGINT arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The conventional exit status after SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
