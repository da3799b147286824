# The smallest useful VM: `nixos-shell examples/vm.nix`.
# Everything else (console in this terminal, root logged in, your home
# mounted at the same path, no firewall) comes from nixos-shell's defaults.
{ pkgs, ... }:
{
  # Any NixOS option works; here, the newest kernel.
  boot.kernelPackages = pkgs.linuxPackages_latest;
}
