# The flake's checks, discovered: each .nix file of every-platform/ is a
# check on every host, each of linux/ one on Linux hosts only (NixOS builds
# and VM tests), named after its file; examples.nix adds one check per
# example. A check file is a function of { self, pkgs, ... }. Helpers the
# checks import live in lib/, their data beside them in a folder of the
# check's name; neither is discovered.
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
  # The checks of dir: one per .nix file, named after it.
  discover =
    dir:
    let
      files = lib.filterAttrs (file: type: type == "regular" && lib.hasSuffix ".nix" file) (
        builtins.readDir dir
      );
    in
    lib.mapAttrs' (
      file: _: lib.nameValuePair (lib.removeSuffix ".nix" file) (import (dir + "/${file}") args)
    ) files;
in
discover ./every-platform
// lib.optionalAttrs stdenv.hostPlatform.isLinux (
  discover ./linux // import ./examples.nix (args // { inherit examples; })
)
