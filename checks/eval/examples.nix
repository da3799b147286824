# The examples the README points at exist (one per section of the original
# README), each opens with a comment, and each is a NixOS module: a function
# or an attribute set. The templates are there too.
let
  names = [
    "vm"
    "vm-forward"
    "vm-graphics"
    "vm-mounts"
    "vm-efi"
    "vm-resources"
    "vm-bridge"
    "vm-disk"
    "vm-nixpath"
    "darwin"
  ];
  file = name: ../../examples + "/${name}.nix";
  isModule = value: builtins.isFunction value || builtins.isAttrs value;
  startsWithComment = name: builtins.substring 0 2 (builtins.readFile (file name)) == "# ";
  templates = [
    ../../templates/default/flake.nix
    ../../templates/default/vm.nix
    ../../templates/legacy/vm.nix
  ];
  check = what: ok: if ok then true else throw "examples: ${what}";
in
builtins.all (x: x) (
  map (name: check "examples/${name}.nix is missing" (builtins.pathExists (file name))) names
  ++ map (name: check "examples/${name}.nix must open with a comment" (startsWithComment name)) names
  ++ map (name: check "examples/${name}.nix is not a module" (isModule (import (file name)))) names
  ++ map (path: check "${toString path} is missing" (builtins.pathExists path)) templates
)
