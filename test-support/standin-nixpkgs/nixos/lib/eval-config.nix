# nixos/lib/eval-config.nix: the module system over NixOS's base modules.
# As NixOS does, `modulesPath` is a string and `system` only a default for
# nixpkgs.hostPlatform.
{
  system ? null,
  modules ? [ ],
  specialArgs ? { },
  lib ? import ../../lib,
  prefix ? [ ],
  ...
}:
lib.evalModules {
  inherit prefix;
  class = "nixos";
  modules =
    import ../modules/module-list.nix
    ++ modules
    ++ lib.optional (system != null) { nixpkgs.hostPlatform = lib.mkDefault system; };
  specialArgs = {
    modulesPath = toString ../modules;
  }
  // specialArgs;
}
