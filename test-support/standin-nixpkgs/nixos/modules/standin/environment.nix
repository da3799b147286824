# nixos/modules/config/shells-environment.nix, system-path.nix and
# system/etc/etc.nix: shell init, installed packages, files in /etc.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.environment = {
    loginShellInit = mkOption {
      type = types.lines;
      default = "";
      description = "Shell script code called during login shell initialisation.";
    };
    extraSetup = mkOption {
      type = types.lines;
      default = "";
      description = "Shell fragments run in the builder of the system profile ($out), after it is made.";
    };
    systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Packages installed in the system profile.";
    };
    etc = mkOption {
      default = { };
      description = "Files in /etc.";
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
                description = "Whether this file is generated.";
              };
              target = mkOption {
                type = types.str;
                default = name;
                description = "Name of the file relative to /etc.";
              };
              text = mkOption {
                type = types.nullOr types.lines;
                default = null;
                description = "Text of the file.";
              };
              source = mkOption {
                type = types.nullOr types.path;
                default = null;
                description = "Path of the source file.";
              };
              mode = mkOption {
                type = types.str;
                default = "symlink";
                description = "The file's mode, or symlink.";
              };
            };
          }
        )
      );
    };
  };
}
