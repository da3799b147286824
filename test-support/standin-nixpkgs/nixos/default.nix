# <nixpkgs/nixos>: the evaluated configuration of one module, as NixOS's
# nixos/default.nix returns it.
{
  configuration,
  system ? builtins.currentSystem,
}:
let
  eval = import ./lib/eval-config.nix {
    inherit system;
    modules = [ configuration ];
  };
in
{
  inherit (eval) config options extendModules;
  inherit (eval._module.args) pkgs;
  system = eval.config.system.build.toplevel;
}
