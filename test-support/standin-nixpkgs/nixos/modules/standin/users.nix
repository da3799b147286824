# nixos/modules/config/users-groups.nix: the user options nixos-shell and
# its examples use, immutable users' copy of the initial passwords, and the
# warning about a user with more than one password option set (as NixOS
# words and counts it: a value of "" counts, whatever its priority).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.users;
  password = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit description;
  };
in
{
  options.users.mutableUsers = mkOption {
    type = types.bool;
    default = true;
    description = "Whether users and groups may be changed outside the configuration.";
  };

  options.users.users = mkOption {
    default = { };
    description = "Additional user accounts.";
    type = types.attrsOf (
      types.submodule (
        { name, config, ... }:
        {
          options = {
            name = mkOption {
              type = types.str;
              default = name;
              description = "The name of the user account.";
            };
            enable = mkOption {
              type = types.bool;
              default = true;
              description = "Whether the user account is created.";
            };
            isNormalUser = mkOption {
              type = types.bool;
              default = false;
              description = "Whether this is an account for a real user.";
            };
            home = mkOption {
              type = types.path;
              default = if name == "root" then "/root" else "/var/empty";
              description = "The user's home directory.";
            };
            shell = mkOption {
              type = types.nullOr (types.either types.package types.path);
              default = null;
              description = "The user's login shell.";
            };
            hashedPassword = password "The hashed password.";
            hashedPasswordFile = password "A file holding the hashed password.";
            password = password "The password, in clear text.";
            initialHashedPassword = password "The hashed password set when the user is created.";
            initialPassword = password "The clear text password set when the user is created.";
            openssh.authorizedKeys.keys = mkOption {
              type = types.listOf types.singleLineStr;
              default = [ ];
              description = "Public keys allowed to log in as this user.";
            };
          };
          # If !mutableUsers, setting initialPassword is equivalent to
          # setting password (and likewise for the hashed ones).
          config = lib.mkMerge [
            (lib.mkIf (!cfg.mutableUsers && config.initialPassword != null) {
              password = lib.mkDefault config.initialPassword;
            })
            (lib.mkIf (!cfg.mutableUsers && config.initialHashedPassword != null) {
              hashedPassword = lib.mkDefault config.initialHashedPassword;
            })
          ];
        }
      )
    );
  };

  config.warnings = lib.concatMap (
    user:
    let
      passwordOptions = [
        "hashedPassword"
        "hashedPasswordFile"
        "password"
      ]
      ++ lib.optionals cfg.mutableUsers [
        "initialHashedPassword"
        "initialPassword"
      ];
      set = builtins.filter (option: user.${option} != null) passwordOptions;
    in
    lib.optional (builtins.length set > 1) ''
      The user '${user.name}' has multiple of the options
      `initialHashedPassword`, `hashedPassword`, `initialPassword`, `password`
      & `hashedPasswordFile` set to a non-null value: ${toString set}.
    ''
  ) (builtins.attrValues cfg.users);
}
