# nixos/modules/misc/nixpkgs.nix and nixpkgs-flake.nix: the platform picks
# the package set every module gets as `pkgs`.
{ config, lib, ... }:
{
  options.nixpkgs = {
    hostPlatform = lib.mkOption {
      type = lib.types.either lib.types.str lib.types.attrs;
      example = {
        system = "aarch64-linux";
      };
      apply = lib.systems.elaborate;
      description = "The platform the configuration runs on.";
    };
    pkgs = lib.mkOption {
      type = lib.types.pkgs;
      default = import ../../.. { inherit (config.nixpkgs.hostPlatform) system; };
      defaultText = lib.literalExpression "import <nixpkgs> { system = hostPlatform.system; }";
      description = "The package set of the configuration.";
    };
    flake.source = lib.mkOption {
      type = lib.types.nullOr (lib.types.either lib.types.str lib.types.path);
      default = null;
      description = "The nixpkgs flake the configuration was made with.";
    };
  };

  config._module.args.pkgs = config.nixpkgs.pkgs;
}
