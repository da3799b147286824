# nixos/modules/config/users-groups.nix: the user options nixos-shell and
# its examples use.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  password = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit description;
  };
in
{
  options.users.users = mkOption {
    default = { };
    description = "Additional user accounts.";
    type = types.attrsOf (
      types.submodule (
        { name, ... }:
        {
          options = {
            name = mkOption {
              type = types.str;
              default = name;
              description = "The name of the user account.";
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
        }
      )
    );
  };
}
