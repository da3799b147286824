# What both virtiofs eras of qemu-vm.nix share (NixOS/nixpkgs#552774, late
# August 2026): virtiofsd started by the run script, `virtualisation.msize`
# removed the way nixpkgs removes options, securityModel gone.
{ lib, ... }:
{
  imports = [
    ./qemu-vm-common.nix
    (lib.mkRemovedOptionModule [
      "virtualisation"
      "msize"
    ] "The 9p msize no longer applies: shared directories use virtiofs.")
  ];
}
