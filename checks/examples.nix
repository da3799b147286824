# Every example of examples/ builds: its NixOS toplevel, made with lib.mkVm
# for this check's platform. One check per example: example-<name>. An
# example that pins its own guest platform (darwin.nix: aarch64-linux) is
# only evaluated on other hosts: building its toplevel there needs a
# builder of that platform, which `nix flake check` on x86_64-linux does
# not have. Its check then builds on this host, from the toplevel's .drv
# path without its context (so nothing of the other platform is built).
{
  self,
  pkgs,
  examples,
}:
let
  inherit (pkgs) lib;
  inherit (pkgs.stdenv.hostPlatform) system;
  check =
    name: example:
    let
      vm = self.lib.mkVm {
        inherit system;
        modules = [ example ];
      };
      inherit (vm.config.system.build) toplevel;
      guest = vm.config.nixpkgs.hostPlatform.system;
    in
    if guest == system then
      toplevel
    else
      pkgs.runCommand "example-${name}-evaluates" { } ''
        echo ${lib.escapeShellArg "${guest}: ${builtins.unsafeDiscardStringContext toplevel.drvPath}"} > $out
      '';
in
lib.mapAttrs' (name: example: lib.nameValuePair "example-${name}" (check name example)) examples
