# nixos/modules/misc/assertions.nix
{ lib, ... }:
{
  options = {
    assertions = lib.mkOption {
      type = lib.types.listOf lib.types.unspecified;
      internal = true;
      default = [ ];
      description = "Assertions; a false one fails the build of the system with its message.";
    };
    warnings = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      internal = true;
      default = [ ];
      description = "Warnings printed when the system is built.";
    };
  };
}
