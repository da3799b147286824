{
  description = "Spawn a headless NixOS VM from a module or a flake, with its console in this terminal";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    inputs@{
      self,
      nixpkgs,
    }:
    let
      inherit (nixpkgs) lib;

      # No x86_64-darwin: nixpkgs no longer evaluates its package set for
      # Intel Macs.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # examples/<name>.nix, by name.
      isNixFile = file: type: type == "regular" && lib.hasSuffix ".nix" file;
      exampleFiles = lib.filterAttrs isNixFile (builtins.readDir ./examples);
      example = file: _: lib.nameValuePair (lib.removeSuffix ".nix" file) (./examples + "/${file}");
      examples = lib.mapAttrs' example exampleFiles;
    in
    {
      # A set, not a bare path: `nix flake check` wants modules as sets or
      # functions; the imported path still deduplicates by its own name.
      nixosModules.nixos-shell.imports = [ ./nixosModules/nixos-shell ];
      nixosModules.default = self.nixosModules.nixos-shell;

      lib = {
        /**
          A NixOS configuration that nixos-shell runs: `nixosSystem` with the
          nixos-shell module. The one-line way to declare a VM in a flake.

          # Example

          ```nix
          nixosConfigurations.vm = nixos-shell.lib.mkVm { modules = [ ./vm.nix ]; };
          ```

          # Arguments

          - `system`: the guest's platform (default `"x86_64-linux"`); the
            VM may run on another host, see `virtualisation.host.pkgs`.
          - `modules`: the VM's NixOS modules.
          - `specialArgs`: extra module arguments, as for `nixosSystem`.
          - `nixpkgs`: the nixpkgs flake to build with (default: this flake's
            input, which `inputs.nixos-shell.inputs.nixpkgs.follows` sets).
        */
        mkVm =
          {
            system ? "x86_64-linux",
            modules ? [ ],
            specialArgs ? { },
            nixpkgs ? inputs.nixpkgs,
          }:
          nixpkgs.lib.nixosSystem {
            inherit specialArgs;
            modules = [
              self.nixosModules.nixos-shell
              { nixpkgs.hostPlatform = nixpkgs.lib.mkDefault system; }
            ]
            ++ modules;
          };
      };

      # `nixos-shell path:/path/to/nixos-shell#vm-forward` runs an example.
      nixosConfigurations = lib.mapAttrs (_: file: self.lib.mkVm { modules = [ file ]; }) examples;

      packages = forAllSystems (pkgs: {
        nixos-shell = pkgs.callPackage ./package.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-shell;
      });

      apps = forAllSystems (
        pkgs:
        let
          app = {
            type = "app";
            program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-shell;
            meta.description = "Run a NixOS VM from ./vm.nix or a flake in this terminal";
          };
        in
        {
          nixos-shell = app;
          default = app;
        }
      );

      overlays.default = final: _prev: {
        nixos-shell = final.callPackage ./package.nix { };
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          # The crate's build inputs (cargo, rustc), not its wrapper's.
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-shell.guest ];
          packages = [
            pkgs.clippy
            pkgs.rustfmt
            pkgs.nixfmt-tree
          ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      templates = {
        default = {
          path = ./templates/default;
          description = "A flake with nixosConfigurations.vm for nixos-shell";
          welcomeText = "Point inputs.nixos-shell at where you get nixos-shell (for a checkout: `nix flake lock --override-input nixos-shell path:/path/to/nixos-shell`), edit vm.nix, then run `nixos-shell` here.";
        };
        legacy = {
          path = ./templates/legacy;
          description = "A lone vm.nix for nixos-shell";
          welcomeText = "Edit vm.nix, then run `nixos-shell` here.";
        };
      };

      checks = forAllSystems (pkgs: import ./checks { inherit self pkgs examples; });
    };
}
