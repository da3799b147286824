# The stand-in package set: what the project's Nix code asks of `pkgs`. Every
# package is a stub that builds with the host's /bin/sh (the tests' nix runs
# without a sandbox); runCommand behaves as nixpkgs' does for its callers.
{
  system ? builtins.currentSystem,
  ...
}:
let
  lib = import ./lib;
  platform = lib.systems.elaborate system;

  # nixpkgs' runCommand: a derivation running `script` with `env` in its
  # environment; passthru and meta are attributes of the result, not of the
  # build's environment.
  runCommand =
    name: env: script:
    let
      drv = derivation (
        builtins.removeAttrs env [
          "passthru"
          "meta"
        ]
        // {
          inherit name system;
          builder = "/bin/sh";
          args = [
            "-c"
            ''
              PATH=/usr/bin:/bin
              set -e
              ${script}
            ''
          ];
        }
      );
    in
    drv // (env.passthru or { }) // { meta = env.meta or { }; };

  stub = name: runCommand name { } "mkdir -p $out/bin";

  pkgs = {
    # What lib.types.pkgs checks a package set by.
    _type = "pkgs";
    inherit lib system runCommand;
    path = ./.;
    stdenv = {
      hostPlatform = platform;
      buildPlatform = platform;
    };
    runCommandLocal = runCommand;
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

    # The nixos-shell package (package.nix) as the stand-in "builds" it: the
    # binary cargo built for the tests (named by ./nixos-shell-binary) in
    # the `guest` output when the recipe has one, else in `out`.
    rustPlatform.buildRustPackage =
      attrs:
      let
        outputs = attrs.outputs or [ "out" ];
        bin = if builtins.elem "guest" outputs then "$guest/bin" else "$out/bin";
      in
      runCommand "${attrs.pname}-${attrs.version}" {
        inherit outputs;
        # As nixpkgs' builder has it: a store path the install step names is
        # an input of the build. (Not `src`: lib.fileset needs a newer nix
        # than some test machines have.)
        postInstall = attrs.postInstall or "";
      } ''
        for output in ${toString outputs}; do mkdir -p "$(eval echo \$$output)/bin"; done
        cp ${builtins.readFile ./nixos-shell-binary} ${bin}/nixos-shell
        ln -s nixos-shell ${bin}/nixos-shell-guest
      '';
    # nixpkgs' closureInfo (pkgs/build-support/closure-info.nix): the
    # closure of `rootPaths` in `registration`, in the format `nix-store
    # --load-db` reads. nixpkgs writes it from the build's
    # exportReferencesGraph; the stand-in asks the host's nix for the same
    # lines (the tests' nix builds without a sandbox, as the tests' user).
    closureInfo =
      { rootPaths }:
      runCommand "closure-info" { } ''
        mkdir $out
        nix-store -qR ${toString rootPaths} > $out/store-paths
        nix-store --dump-db $(cat $out/store-paths) > $out/registration
      '';
    installShellFiles = stub "install-shell-files";
    makeWrapper = stub "make-wrapper";

    kmod = stub "kmod";
    git = stub "git";
    # The test machine's real virtiofsd (named by ./virtiofsd-binary, which
    # the harness writes), copied into the store, so that the CLI runs the
    # path the manifest names, as it does with nixpkgs' package, and any
    # user can run it. Without one, a stub that says what to do.
    virtiofsd =
      let
        real = if builtins.pathExists ./virtiofsd-binary then builtins.readFile ./virtiofsd-binary else "";
      in
      runCommand "virtiofsd" { } (
        if real == "" then
          ''
            mkdir -p $out/bin
            printf '#!/bin/sh\necho "virtiofsd is missing on this machine: cargo install virtiofsd" >&2\nexit 127\n' > $out/bin/virtiofsd
            chmod +x $out/bin/virtiofsd
          ''
        else
          ''
            mkdir -p $out/bin
            cp '${real}' $out/bin/virtiofsd
            chmod 555 $out/bin/virtiofsd
          ''
      );
    linuxPackages = {
      kernel = stub "linux";
    };
    linuxPackages_latest = {
      kernel = stub "linux-latest";
    };
    OVMF.fd = stub "OVMF-fd";
  };
in
pkgs
