# qemu-vm.nix before late August 2026: shares over 9p, with NixOS's own
# `virtualisation.msize` and a security model per shared directory; a shared
# memory backend only when asked for (the test driver's ssh backdoor brought
# the option, NixOS/nixpkgs#392030, March 2025).
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  imports = [ ./qemu-vm-common.nix ];

  options.virtualisation = {
    qemu.enableSharedMemory = lib.mkEnableOption "shared memory";
    msize = mkOption {
      type = types.ints.positive;
      default = 16384;
      description = "The msize (maximum packet size) passed to 9p file systems, in bytes.";
    };
    # The shares of qemu-vm-common.nix, each with the security model 9p
    # gives it (the two declarations merge).
    sharedDirectories = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.securityModel = mkOption {
            type = types.enum [
              "passthrough"
              "mapped-xattr"
              "mapped-file"
              "none"
            ];
            default = "mapped-xattr";
            description = "The security model of this share.";
          };
        }
      );
    };
  };
}
