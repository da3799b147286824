//! Shell quoting, for `--dry-run`: what it prints can be pasted into `sh`.
//! The quoting itself is the crate's one [`crate::shell`], which the guest
//! role uses too.

pub use crate::shell::{join, quote};
