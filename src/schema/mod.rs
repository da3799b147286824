//! The data that crosses a boundary, in one place so that each side reads
//! what the other writes.
//!
//! - [`manifest`]: what the NixOS module says about a build (module → CLI),
//!   shipped inside the build result at [`manifest::MANIFEST_PATH`].
//! - [`facts`]: what the invoking user's host is like at run time
//!   (CLI → guest role), and what the guest hands back (guest role → CLI).
//!
//! Every document carries a `version`; readers ignore fields they do not know,
//! so either side may grow without breaking the other.

pub mod facts;
pub mod manifest;
