# nixos-shell's legacy mode: the VM of a NixOS module file.
#
# The CLI runs `nix build --impure --expr <this file> --argstr ...`. The file
# is evaluated with <nixpkgs/nixos> together with the nixos-shell module; the
# result is the module's `system.build.nixos-shell` (run script + manifest).
#
# configuration: absolute path of the module file
# module:        absolute path of the nixos-shell NixOS module
# nixpkgs:       nixpkgs to use when <nixpkgs> is not in the search path ("" = none)
# guestSystem:   the guest's platform ("" = this machine's)
# hostSystem:    the platform QEMU runs on ("" = the guest's)
{
  configuration,
  module,
  nixpkgs ? "",
  guestSystem ? "",
  hostSystem ? "",
}:
let
  shellLib = import ((/. + module) + "/lib.nix");
  nixpkgsPath = shellLib.nixpkgsPath {
    builtIn = nixpkgs;
    message = "nixos-shell: <nixpkgs> is not in the Nix search path; set NIX_PATH=nixpkgs=/path/to/nixpkgs, pass -I nixpkgs=..., or set NIXOS_SHELL_NIXPKGS";
  };
  nixos = import "${nixpkgsPath}/nixos" (
    {
      configuration = {
        imports = [
          (/. + configuration)
          (/. + module)
        ]
        ++ shellLib.hostModules hostSystem;
      };
    }
    // (if guestSystem == "" then { } else { system = guestSystem; })
  );
in
nixos.config.system.build.nixos-shell
