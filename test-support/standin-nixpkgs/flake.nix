# The stand-in as a flake, shaped as nixpkgs' own: `lib` (with
# `lib.nixosSystem`), `legacyPackages.<system>`, `nixosModules`.
{
  outputs =
    { self }:
    let
      lib = (import ./lib).extend (
        final: _prev: {
          nixosSystem =
            args:
            import ./nixos/lib/eval-config.nix (
              { lib = final; }
              // args
              // {
                modules = (args.modules or [ ]) ++ [ { nixpkgs.flake.source = self.outPath; } ];
              }
            );
        }
      );
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./. { inherit system; });
    };
}
