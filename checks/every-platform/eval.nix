# The evaluation tests of checks/eval/ (pure Nix, no nixpkgs) as a flake
# check: evaluating this derivation runs them; a failing one throws.
{ pkgs, ... }:
let
  results = import ../eval;
  failed = builtins.filter (name: results.${name} != true) (builtins.attrNames results);
in
assert failed == [ ] || throw "nixos-shell: evaluation tests failed: ${toString failed}";
pkgs.runCommand "nixos-shell-eval-tests" { } "touch $out"
