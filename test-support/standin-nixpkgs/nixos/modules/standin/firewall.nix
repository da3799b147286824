# nixos/modules/services/networking/firewall.nix
{ lib, ... }:
{
  options.networking.firewall.enable = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Whether to enable the firewall.";
  };
}
