# nixos-shell's NixOS module: turns a NixOS configuration into a VM that
# `nixos-shell` runs in the terminal. This file only gathers the parts.
{ modulesPath, ... }:
{
  imports = [
    (modulesPath + "/virtualisation/qemu-vm.nix")
    ./options.nix
    ./defaults.nix
    ./console.nix
    ./mounts.nix
    ./ssh.nix
    ./guest.nix
    ./terminfo.nix
    ./manifest.nix
  ];
}
