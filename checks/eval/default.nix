# Evaluation tests that need no nixpkgs, only `nix-instantiate`: every other
# file here evaluates to `true` or throws a message saying what is wrong.
#   nix-instantiate --eval --strict checks/eval
# The flake runs them too (checks.<system>.eval).
let
  isNix = file: builtins.match ".*\\.nix" file != null;
  isTest = file: type: type == "regular" && file != "default.nix" && isNix file;
  entries = builtins.readDir ./.;
  tests = builtins.filter (file: isTest file entries.${file}) (builtins.attrNames entries);
in
builtins.listToAttrs (
  map (file: {
    name = file;
    value = import (./. + "/${file}");
  }) tests
)
