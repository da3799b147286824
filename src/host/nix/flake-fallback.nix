# nixos-shell's full flake lookup, used only when
# `<flake>#nixosConfigurations.<name>.config.system.build.nixos-shell` does
# not exist (the configuration lacks the nixos-shell module).
#
# The CLI runs `nix build --impure --expr <this file> --argstr ...`. It looks,
# in order, for:
#   nixosConfigurations.<name>   extended with the module by extendModules,
#                                else by override, else a clear error;
#   nixosModules.<name>          evaluated with the flake's nixpkgs input
#                                (else <nixpkgs>, else `nixpkgs`);
#   packages.<system>.nixosConfigurations.<name>   like the first.
#
# flakeRef:    the flake reference (local paths absolute), or
# flakeDir:    the directory of a local flake whose path nix's URL parser
#              refuses (a space, say): read as a path flake
# name:        the attribute name (default vm)
# module:      absolute path of the nixos-shell NixOS module
# nixpkgs:     nixpkgs for nixosModules when the flake has no nixpkgs input
# guestSystem: the guest's platform ("" = this machine's)
# hostSystem:  the platform QEMU runs on ("" = the guest's)
{
  flakeRef ? "",
  flakeDir ? "",
  name,
  module,
  nixpkgs ? "",
  guestSystem ? "",
  hostSystem ? "",
}:
let
  flake =
    if flakeDir != "" then
      builtins.getFlake (
        builtins.unsafeDiscardStringContext (
          builtins.path {
            path = flakeDir;
            name = "source";
            filter = path: _: baseNameOf path != ".git";
          }
        )
      )
    else
      builtins.getFlake flakeRef;
  flakeName = if flakeDir != "" then flakeDir else flakeRef;
  system = if guestSystem != "" then guestSystem else builtins.currentSystem;
  shellLib = import ((/. + module) + "/lib.nix");
  shellModules = [ (/. + module) ] ++ shellLib.hostModules hostSystem;

  # Whether the configuration includes the module already. One that sets
  # nixos-shell's options without it (a plain nixosSystem relying on the
  # original nixos-shell to add it) throws on any look at its config ("The
  # option `nixos-shell...' does not exist"): it lacks the module too. The
  # CLI comes here only when the attribute is missing or that is what nix
  # said (src/host/nix.rs).
  hasModule =
    configuration:
    let
      tried = builtins.tryEval (configuration ? config.system.build.nixos-shell);
    in
    tried.success && tried.value;

  extend =
    attribute: configuration:
    if hasModule configuration then
      configuration
    else if configuration ? extendModules then
      configuration.extendModules { modules = shellModules; }
    else if configuration ? override then
      configuration.override (old: {
        modules = (old.modules or [ ]) ++ shellModules;
      })
    else
      throw "nixos-shell: ${attribute} of ${flakeName} can be neither extended (it has no extendModules) nor overridden (no override); build it with nixos-shell's lib.mkVm, or wrap the function that makes it in lib.makeOverridable";

  nixpkgsPath = shellLib.nixpkgsPath {
    preferred = if flake ? inputs.nixpkgs then toString flake.inputs.nixpkgs else null;
    builtIn = nixpkgs;
    message = "nixos-shell: ${flakeName} has no nixpkgs input to evaluate nixosModules.${name} with, and <nixpkgs> is not in the search path; add a nixpkgs input, set NIX_PATH=nixpkgs=..., or set NIXOS_SHELL_NIXPKGS";
  };
  fromModule =
    nixosModule:
    import "${nixpkgsPath}/nixos" {
      configuration = {
        imports = [ nixosModule ] ++ shellModules;
      };
      inherit system;
    };

  configurations = "nixosConfigurations.${name}";
  modules = "nixosModules.${name}";
  packaged = "packages.${system}.nixosConfigurations.${name}";
  vm =
    if flake ? nixosConfigurations.${name} then
      extend configurations flake.nixosConfigurations.${name}
    else if flake ? nixosModules.${name} then
      fromModule flake.nixosModules.${name}
    else if flake ? packages.${system}.nixosConfigurations.${name} then
      extend packaged flake.packages.${system}.nixosConfigurations.${name}
    else
      throw "nixos-shell: ${flakeName} provides none of ${configurations}, ${modules}, ${packaged}; add one (e.g. ${configurations} = nixos-shell.lib.mkVm { ... }) or name another attribute with FLAKE#NAME";
in
vm.config.system.build.nixos-shell
