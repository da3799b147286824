# A Linux VM on a macOS host. The guest is Linux; QEMU and the run script are
# built for the Mac. Building the guest needs a Linux builder (e.g.
# nix-darwin's nix.linux-builder.enable). On Apple silicon make the guest
# aarch64-linux:
#   nixos-shell --guest-system aarch64-linux --host-system aarch64-darwin examples/darwin.nix
# or, in a flake, nixos-shell.lib.mkVm { system = "aarch64-linux"; modules = [ ./darwin.nix ]; }.
# Host binaries do not run in the guest, so your PATH and Nix profile are not
# handed over (nixos-shell.inheritPath and mounts.mountNixProfile default to
# false here).
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
  # mkDefault: `--host-system` on the command line sets it too.
  virtualisation.host.pkgs = lib.mkDefault (import pkgs.path { system = hostSystem; });
}
