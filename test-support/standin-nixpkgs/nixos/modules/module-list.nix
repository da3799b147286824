# The base modules every configuration gets, as nixos/modules/module-list.nix
# lists NixOS's. qemu-vm.nix is not among them: a VM imports it.
map (file: ./standin + "/${file}") [
  "assertions.nix"
  "nixpkgs.nix"
  "system.nix"
  "boot.nix"
  "environment.nix"
  "systemd.nix"
  "users.nix"
  "sysusers.nix"
  "getty.nix"
  "sshd.nix"
  "git.nix"
  "firewall.nix"
  "misc.nix"
]
