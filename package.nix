# The nixos-shell package: the `nixos-shell` CLI, and its guest role under
# the name `nixos-shell-guest` that the NixOS module runs in the VM.
#
# Two derivations, so that a change of the module (or of this nixpkgs)
# does not rebuild the crate, whose binary every VM's closure carries:
#   guest  the crate, built from the Rust sources alone: bin/nixos-shell,
#          bin/nixos-shell-guest, completions and man page; no store path
#          is compiled into it (also `nixos-shell.passthru.guest`)
#   out    the wrapper (this file's result): bin/nixos-shell runs the
#          crate's binary with two store paths as defaults of environment
#          variables the user may set:
#            NIXOS_SHELL_MODULE   the NixOS module, for `nixos-shell vm.nix`
#            NIXOS_SHELL_NIXPKGS  this nixpkgs, for `vm.nix` when NIX_PATH
#                                 has none
#          (a store path in the binary itself would be a run-time reference:
#          nixpkgs' whole source in every VM). Only this derivation depends
#          on the module tree and on nixpkgs, so only it is rebuilt when they
#          change; with both in one derivation, every edit of a .nix file
#          (and, for a NIX_PATH checkout, every change of nixpkgs) rebuilt
#          the crate.
{
  lib,
  stdenv,
  runCommand,
  rustPlatform,
  installShellFiles,
  makeWrapper,
  path,
}:
let
  cargoToml = lib.importTOML ./Cargo.toml;
  inherit (cargoToml.package) version;

  # What cargo needs, and nothing that would rebuild the crate needlessly.
  crate = lib.fileset.unions [
    ./Cargo.toml
    ./Cargo.lock
    ./src
    # A workspace member (the tests' support crate): cargo reads its
    # manifest to load the workspace, even for the binary alone.
    ./test-support
  ];

  guest = rustPlatform.buildRustPackage {
    pname = "${cargoToml.package.name}-guest";
    inherit version;

    src = lib.fileset.toSource {
      root = ./.;
      fileset = crate;
    };
    cargoLock.lockFile = ./Cargo.lock;

    # The unit tests only, the binary's and the library's (the schema both
    # roles share): the integration tests drive nix and QEMU, which the
    # build sandbox does not have (CI runs them).
    cargoTestFlags = [
      "--bins"
      "--lib"
    ];

    nativeBuildInputs = [ installShellFiles ];

    # One binary, two roles: argv[0] `nixos-shell-guest` selects the guest.
    # Completions and the man page come from the binary's clap definitions
    # (hidden flags), so they need a binary this platform can run: none
    # when cross-built.
    postInstall = ''
      ln -s nixos-shell $out/bin/nixos-shell-guest
    ''
    + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd nixos-shell \
        --bash <($out/bin/nixos-shell --generate-completions bash) \
        --zsh <($out/bin/nixos-shell --generate-completions zsh) \
        --fish <($out/bin/nixos-shell --generate-completions fish)
      $out/bin/nixos-shell --generate-man-page > nixos-shell.1
      installManPage nixos-shell.1
    '';

    meta.platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };

  # The module as the CLI hands it to Nix in legacy mode. It carries this
  # recipe and the crate, since its `nixos-shell.package` default builds this
  # package from ../../package.nix: from the store copy, that yields these
  # very derivations again (same files, same store paths), not a second
  # build.
  moduleTree = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [
      crate
      ./package.nix
      ./nixosModules
    ];
  };

  # A flake's nixpkgs is in the store already; a checkout in NIX_PATH gets
  # copied, without its .git and editor litter. Only the wrapper reads it.
  nixpkgs = if lib.isStorePath path then path else lib.cleanSource path;
in
runCommand "${cargoToml.package.name}-${version}"
  {
    nativeBuildInputs = [ makeWrapper ];
    passthru = { inherit guest; };
    meta = {
      inherit (cargoToml.package) description;
      license = lib.licenses.mit;
      mainProgram = "nixos-shell";
      platforms = lib.platforms.linux ++ lib.platforms.darwin;
    };
  }
  ''
    mkdir -p $out/bin
    makeWrapper ${guest}/bin/nixos-shell $out/bin/nixos-shell \
      --set-default NIXOS_SHELL_MODULE ${moduleTree}/nixosModules/nixos-shell \
      --set-default NIXOS_SHELL_NIXPKGS ${nixpkgs}
    # Completions and the man page are the crate's.
    if [ -d ${guest}/share ]; then
      ln -s ${guest}/share $out/share
    fi
  ''
