# qemu-vm.nix since mid-September 2026 (NixOS/nixpkgs#552774, #563324):
# shares over virtiofs on Linux hosts, virtiofsd started by the run script,
# guest memory in a shared memfd (mem0) by default; `virtualisation.msize`
# removed the way nixpkgs removes options, securityModel gone.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  imports = [ ./qemu-vm-virtiofs-shares.nix ];

  options.virtualisation = {
    qemu.enableSharedMemory = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Back the guest's memory with a shared memfd (`-object
        memory-backend-memfd,id=mem0,size=<memorySize>M,share=on -machine
        memory-backend=mem0`), which virtiofsd needs.
      '';
    };
  };
}
