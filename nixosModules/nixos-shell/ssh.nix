# SSH: sshd stays off unless the user turns it on, but is ready for root's
# keys. The guest role writes the host user's public keys to
# /run/nixos-shell/authorized-keys/<user> when the VM starts; never into a
# home directory, since the host's home is shared with the VM.
{ ... }:
let
  inherit ((import ./lib.nix).guestPaths) authorizedKeysDir;
in
{
  services.openssh.authorizedKeysFiles = [ "${authorizedKeysDir}/%u" ];
}
