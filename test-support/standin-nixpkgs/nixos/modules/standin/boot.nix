# nixos/modules/system/boot/kernel.nix and loader/systemd-boot: kernel
# modules and parameters.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.boot = {
    kernelPackages = mkOption {
      type = types.raw;
      default = pkgs.linuxPackages;
      defaultText = lib.literalExpression "pkgs.linuxPackages";
      description = "The kernel package set.";
    };
    kernelModules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Kernel modules loaded in the second boot stage.";
    };
    kernelParams = mkOption {
      type = types.listOf (
        types.strMatching ''([^"[:space:]]|"[^"]*")+''
        // {
          name = "kernelParam";
          description = "string, with spaces inside double quotes";
        }
      );
      default = [ ];
      description = "Parameters added to the kernel command line.";
    };
    loader.systemd-boot.enable = lib.mkEnableOption "the systemd-boot EFI boot manager";
  };
}
