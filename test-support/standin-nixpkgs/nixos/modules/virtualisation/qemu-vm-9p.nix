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
    sharedDirectories = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption {
            type = types.str;
            description = "The path of the directory to share, can be a shell variable.";
          };
          options.target = mkOption {
            type = types.path;
            description = "The mount point of the directory inside the virtual machine.";
          };
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
      default = { };
      description = "Directories shared with the virtual machine over 9p; the name is the mount tag.";
    };
  };
}
