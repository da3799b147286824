# qemu-vm.nix before late August 2026: shares over 9p, with NixOS's own
# `virtualisation.msize` and a security model per shared directory.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  imports = [ ./qemu-vm-common.nix ];

  options.virtualisation = {
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
