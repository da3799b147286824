# The flake's checks, one file per test. NixOS builds and VM tests run on
# Linux only; a darwin host gets the package and the evaluation tests.
{
  self,
  pkgs,
  examples,
}:
let
  inherit (pkgs) lib stdenv;
  args = {
    inherit self pkgs;
  };
in
{
  package = self.packages.${stdenv.hostPlatform.system}.nixos-shell;
  eval = import ./eval.nix args;
  formatting = import ./formatting.nix args;
}
// lib.optionalAttrs stdenv.hostPlatform.isLinux (
  {
    vm = import ./vm.nix args;
    vm-command = import ./vm-command.nix args;
    cli = import ./cli.nix args;
    manifest = import ./manifest.nix args;
  }
  // import ./examples.nix (args // { inherit examples; })
)
