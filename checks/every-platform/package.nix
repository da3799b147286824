# The package builds (and runs its unit tests).
{
  self,
  pkgs,
}:
self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-shell
