# nixos/modules/services/ttys/getty.nix
{ lib, ... }:
{
  options.services.getty = {
    autologinUser = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "Username of the account that is logged in on the consoles without a password.";
    };
    helpLine = lib.mkOption {
      type = lib.types.lines;
      default = "";
      description = "Help line printed by getty below the welcome line.";
    };
  };
}
