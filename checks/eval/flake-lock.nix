# flake.lock is a version 7 lock whose one input, nixpkgs, follows
# nixos-unstable and is locked to some revision. The shape only: the values
# change with every `nix flake update`, which must not break the checks.
let
  lock = builtins.fromJSON (builtins.readFile ../../flake.lock);
  nixpkgs = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs};
  inherit (nixpkgs) locked;
  expect =
    what: got: want:
    if got == want then
      true
    else
      throw "flake.lock ${what}: expected ${builtins.toJSON want}, got ${builtins.toJSON got}";
  matches = regex: value: builtins.isString value && builtins.match regex value != null;
in
builtins.all (x: x) [
  (expect "version" lock.version 7)
  (expect "root inputs" (builtins.attrNames lock.nodes.${lock.root}.inputs) [ "nixpkgs" ])
  (expect "nixpkgs original" nixpkgs.original {
    type = "github";
    owner = "NixOS";
    repo = "nixpkgs";
    ref = "nixos-unstable";
  })
  (expect "nixpkgs locked source" {
    inherit (locked) type owner repo;
  } {
    type = "github";
    owner = "NixOS";
    repo = "nixpkgs";
  })
  (expect "nixpkgs revision is a commit" (matches "[0-9a-f]{40}" locked.rev) true)
  (expect "nixpkgs narHash is an SRI sha256" (matches "sha256-[A-Za-z0-9+/]{43}=" locked.narHash) true)
  (expect "nixpkgs lastModified is a time" (builtins.isInt locked.lastModified) true)
]
