{
  description = "A NixOS VM for nixos-shell";

  # Where you get nixos-shell from: its published flake, or a checkout
  # (`nix flake lock --override-input nixos-shell path:/path/to/nixos-shell`).
  inputs.nixos-shell.url = "github:OWNER/nixos-shell";
  # To build the VM with your own nixpkgs:
  # inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  # inputs.nixos-shell.inputs.nixpkgs.follows = "nixpkgs";

  outputs =
    { nixos-shell, ... }:
    {
      # `nixos-shell` in this directory runs it; so does `nixos-shell .#vm`.
      # On an ARM machine, add `system = "aarch64-linux";`.
      nixosConfigurations.vm = nixos-shell.lib.mkVm { modules = [ ./vm.nix ]; };
    };
}
