# nixos/modules/services/networking/ssh/sshd.nix
{ lib, ... }:
{
  options.services.openssh = {
    enable = lib.mkEnableOption "the OpenSSH secure shell daemon";
    startWhenNeeded = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether sshd is socket-activated, one instance per connection.";
    };
    authorizedKeysFiles = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Files sshd reads authorized keys from (%u is the user's name).";
    };
  };
}
