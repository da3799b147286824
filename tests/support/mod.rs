//! Helpers shared by the integration tests.
pub mod nix_fixture;
pub mod our_flake;
pub mod standin;
pub mod vm;
