# nixos/modules/system/activation/top-level.nix, misc/version.nix and
# tasks/network-interfaces.nix (hostName): the system's name, its state
# version and the attribute set of things a configuration builds, with the
# system itself (`toplevel`), built for the configuration's own platform.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
in
{
  options = {
    system.name = mkOption {
      type = types.str;
      default = if config.networking.hostName == "" then "unnamed" else config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "The name of the system, used in its derivations' names.";
    };
    system.stateVersion = mkOption {
      type = types.str;
      default = lib.trivial.release;
      description = "The NixOS release whose defaults stateful data was first created with.";
    };
    system.build = mkOption {
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = types.lazyAttrsOf (types.uniq types.unspecified); } ];
      };
      description = "Attribute set of derivations used to set up the system.";
    };
    # nixos/modules/system/activation/switchable-system.nix: without it the
    # toplevel has no bin/switch-to-configuration.
    system.switch.enable = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to include the capability to switch configurations.";
    };
    networking.hostName = mkOption {
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
      default = "nixos";
      description = "The name of the machine.";
    };
  };

  config.system.build.toplevel = pkgs.runCommand "nixos-system-${config.system.name}" { } "mkdir $out";
}
