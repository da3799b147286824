# qemu-vm.nix between NixOS/nixpkgs#552774 (late August 2026: shares over
# virtiofs) and #563324 (mid-September: shared memory by default): the run
# script's virtiofsd needs the guest's memory shared, and nothing asks for
# it; a VM that does not boots only where someone sets the option (the test
# driver does, nixos/lib/testing/driver.nix).
{ lib, ... }:
{
  imports = [ ./qemu-vm-virtiofs-shares.nix ];

  options.virtualisation.qemu.enableSharedMemory = lib.mkEnableOption "shared memory";
}
