# Every example of examples/ builds: its NixOS toplevel, made with lib.mkVm
# for this check's platform. One check per example: example-<name>.
{
  self,
  pkgs,
  examples,
}:
pkgs.lib.mapAttrs' (
  name: example:
  pkgs.lib.nameValuePair "example-${name}"
    (self.lib.mkVm {
      inherit (pkgs.stdenv.hostPlatform) system;
      modules = [ example ];
    }).config.system.build.toplevel
) examples
