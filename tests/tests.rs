//! Integration tests, built as one binary. They drive the real `nix`
//! (offline, against fixtures the tests write) and a real QEMU VM.

mod cli;
mod flake;
mod module;
mod support;
mod vm;

// The benchmark's pure helpers (a `harness = false` bench cannot run its own
// unit tests): its shell-word splitter and its statistics.
#[path = "../benches/costs/stats.rs"]
mod bench_stats;
#[path = "../benches/costs/words.rs"]
mod bench_words;
