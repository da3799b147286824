# NIX_PATH in the VM: `<nixpkgs>` is the nixpkgs the VM was built from, so
# nix-shell and nix-build work without downloading a channel. (A VM built
# from a flake with lib.mkVm has this already.)
{ pkgs, ... }:
{
  nix.nixPath = [ "nixpkgs=${pkgs.path}" ];
}
