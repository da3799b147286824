//! The benchmark's pure helpers, here rather than in `benches/costs/` so
//! that `cargo test --workspace` runs their tests (a `harness = false`
//! bench cannot): [`stats`] summarizes timings, [`dry_run`] reads the
//! commands `nixos-shell --dry-run` prints.

pub mod dry_run;
pub mod stats;
