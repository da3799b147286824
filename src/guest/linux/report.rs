//! Messages of the guest role, for whoever watches the console.
//!
//! They go to stderr, which is the console in a plain init and, under the
//! module's unit (`StandardError=journal+console`), the journal and the
//! console. One line each, prefixed with the program's name.

pub struct Reporter;

impl Reporter {
    /// Reports progress.
    pub fn say(&self, message: &str) {
        eprintln!("nixos-shell-guest: {message}");
    }

    /// Reports a failed step; the role goes on.
    pub fn warn(&self, message: &str) {
        eprintln!("nixos-shell-guest: warning: {message}");
    }

    /// Reports the error of a step, if any.
    pub fn check(&self, result: anyhow::Result<()>) {
        if let Err(err) = result {
            self.warn(&format!("{err:#}"));
        }
    }
}
