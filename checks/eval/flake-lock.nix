# flake.lock is a version 7 lock whose nixpkgs input follows nixos-unstable,
# locked at the revision the project builds with.
let
  lock = builtins.fromJSON (builtins.readFile ../../flake.lock);
  nixpkgs = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs};
  narHash = "sha256-bxrdOn8SCOv8tN4JbTF/TXq7kjo9ag4M+C8yzzIRYbE=";
  expect =
    what: got: want:
    if got == want then
      true
    else
      throw "flake.lock ${what}: expected ${builtins.toJSON want}, got ${builtins.toJSON got}";
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
  (expect "nixpkgs revision" nixpkgs.locked.rev "1c3fe55ad329cbcb28471bb30f05c9827f724c76")
  (expect "nixpkgs narHash" nixpkgs.locked.narHash narHash)
  (expect "nixpkgs lastModified" nixpkgs.locked.lastModified 1777268161)
]
