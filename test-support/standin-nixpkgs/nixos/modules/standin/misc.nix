# Options the project's examples set that nixos-shell never reads:
# nixos/modules/config/nix.nix (nix.nixPath) and services/x11/xserver.nix.
{ lib, ... }:
{
  options = {
    nix.nixPath = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "The default Nix search path.";
    };
    services.xserver.enable = lib.mkEnableOption "the X server";
    services.xserver.windowManager.icewm.enable = lib.mkEnableOption "the IceWM window manager";
  };
}
