# A Linux VM on a Mac with Apple silicon: an aarch64-linux guest, its QEMU and
# run script built for aarch64-darwin. Building the guest needs a Linux
# builder (e.g. nix-darwin's nix.linux-builder.enable). Run it with
#   nixos-shell examples/darwin.nix
# or, in a flake, nixos-shell.lib.mkVm { system = "aarch64-linux"; modules = [ ./darwin.nix ]; }.
# (Intel Macs are gone: nixpkgs 26.11 no longer evaluates x86_64-darwin.)
# Host binaries do not run in the guest, so your PATH and Nix profile are not
# handed over (nixos-shell.inheritPath and mounts.mountNixProfile default to
# false here), and the shares are 9p (virtiofsd runs on Linux only).
{
  lib,
  pkgs,
  ...
}:
let
  # The Mac of the same architecture as the guest.
  hostSystem = builtins.replaceStrings [ "-linux" ] [ "-darwin" ] pkgs.stdenv.hostPlatform.system;
in
{
  # Above lib.mkVm's default of its `system` (mkDefault) and below anything
  # you set yourself.
  nixpkgs.hostPlatform = lib.mkOverride 900 "aarch64-linux";
  # mkDefault: `--host-system` on the command line sets it too.
  virtualisation.host.pkgs = lib.mkDefault (import pkgs.path { system = hostSystem; });
}
