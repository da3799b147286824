# nixos/modules/system/boot/systemd/sysusers.nix: the option, and its check
# that system users (root included) have only initial passwords, as NixOS
# words and computes it.
{ config, lib, ... }:
let
  systemUsers = lib.filterAttrs (_: user: user.enable && !user.isNormalUser) config.users.users;
in
{
  options.systemd.sysusers.enable = lib.mkEnableOption "systemd-sysusers";

  config = lib.mkIf config.systemd.sysusers.enable {
    assertions = lib.mapAttrsToList (username: user: {
      assertion =
        (user.password == user.initialPassword || user.password == null)
        && (user.hashedPassword == user.initialHashedPassword || user.hashedPassword == null);
      message = "user '${username}' uses password or hashedPassword. systemd-sysupdate only supports initial passwords. It'll never update your passwords.";
    }) systemUsers;
  };
}
