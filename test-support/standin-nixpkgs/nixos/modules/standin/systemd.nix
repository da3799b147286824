# nixos/modules/system/boot/systemd.nix and lib/systemd-unit-options.nix:
# the service options nixos-shell and its examples use.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  unitNames = mkOption {
    type = types.listOf types.str;
    default = [ ];
    description = "Names of units.";
  };
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    (types.listOf (
      types.oneOf [
        types.bool
        types.int
        types.str
        types.path
      ]
    ))
  ];
in
{
  options.systemd.services = mkOption {
    default = { };
    description = "Definition of systemd service units.";
    type = types.attrsOf (
      types.submodule {
        options = {
          enable = mkOption {
            type = types.bool;
            default = true;
            description = "Whether the unit is installed.";
          };
          description = mkOption {
            type = types.singleLineStr;
            default = "";
            description = "Description of the unit.";
          };
          wantedBy = unitNames;
          requiredBy = unitNames;
          wants = unitNames;
          requires = unitNames;
          after = unitNames;
          before = unitNames;
          conflicts = unitNames;
          unitConfig = mkOption {
            type = types.attrsOf unitOption;
            default = { };
            description = "The [Unit] section of the unit.";
          };
          restartIfChanged = mkOption {
            type = types.bool;
            default = true;
            description = "Whether the service is restarted when it changed during a switch.";
          };
          path = mkOption {
            type = types.listOf (types.oneOf [
              types.package
              types.str
            ]);
            default = [ ];
            description = "Packages added to the service's PATH.";
          };
          environment = mkOption {
            type = types.attrsOf (types.nullOr (types.oneOf [
              types.str
              types.path
              types.package
            ]));
            default = { };
            description = "Environment variables of the service.";
          };
          script = mkOption {
            type = types.lines;
            default = "";
            description = "Shell commands executed as the service's main process.";
          };
          serviceConfig = mkOption {
            type = types.attrsOf unitOption;
            default = { };
            description = "The [Service] section of the unit.";
          };
        };
      }
    );
  };
}
