//! Integration tests, built as one binary. They drive the real `nix`
//! (offline, against fixtures the tests write) and a real QEMU VM.

mod cli;
mod support;
mod vm;
