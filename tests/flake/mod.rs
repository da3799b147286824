//! The project's own `flake.nix` as a newcomer meets it, against the
//! stand-in nixpkgs (`support::our_flake`): `nix flake init -t`, then
//! `nixos-shell` with no argument and with `.#vm`, in a directory whose path
//! has a space, booting a real VM; every example's
//! `system.build.nixos-shell`; and flakes in the shapes users wrote for
//! the original nixos-shell.

mod checks;
mod examples;
mod newcomer;
mod package;
mod release;
mod users;
