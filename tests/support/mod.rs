//! Helpers shared by the integration tests.
pub mod nix_fixture;
pub mod standin;
pub mod vm;
