//! The documents nixos-shell's two roles and its NixOS module exchange
//! ([`schema`]), as a library: the binary (`src/main.rs`) holds the roles,
//! and the tests read what the module builds with the same types the CLI
//! reads it with.

pub mod schema;
