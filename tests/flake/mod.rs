//! The project's own `flake.nix` as a newcomer meets it, against the
//! stand-in nixpkgs (`support::our_flake`): `nix flake init -t`, then
//! `nixos-shell` with no argument and with `.#vm`, in a directory whose path
//! has a space, booting a real VM; and every example's
//! `system.build.nixos-shell`.

mod examples;
mod newcomer;
