# The nixos-shell package: the `nixos-shell` CLI, and its guest role under
# the name `nixos-shell-guest` that the NixOS module runs in the VM.
#
# Two outputs, so that the VM's closure holds only the binary:
#   guest  the binary, as bin/nixos-shell and bin/nixos-shell-guest; no
#          store path is compiled into it
#   out    bin/nixos-shell, a wrapper that gives the binary two store paths
#          as defaults of environment variables the user may set:
#            NIXOS_SHELL_MODULE   the NixOS module, for `nixos-shell vm.nix`
#            NIXOS_SHELL_NIXPKGS  this nixpkgs, for `vm.nix` when NIX_PATH
#                                 has none
#          (a store path in the binary itself would be a run-time reference:
#          nixpkgs' whole source in every VM)
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  makeWrapper,
  path,
}:
let
  cargoToml = lib.importTOML ./Cargo.toml;

  # What cargo needs, and nothing that would rebuild the crate needlessly.
  crate = lib.fileset.unions [
    ./Cargo.toml
    ./Cargo.lock
    ./src
    # A workspace member (the tests' support crate): cargo reads its
    # manifest to load the workspace, even for the binary alone.
    ./test-support
  ];

  # The module as the CLI hands it to Nix in legacy mode. It carries this
  # recipe and the crate, since its `nixos-shell.package` default builds this
  # package from ../../package.nix: from the store copy, that yields this very
  # derivation again (same files, same store path), not a second build.
  moduleTree = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [
      crate
      ./package.nix
      ./nixosModules
    ];
  };

  # A flake's nixpkgs is in the store already; a checkout in NIX_PATH gets
  # copied, without its .git and editor litter.
  nixpkgs = if lib.isStorePath path then path else lib.cleanSource path;
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    root = ./.;
    fileset = crate;
  };
  cargoLock.lockFile = ./Cargo.lock;

  outputs = [
    "out"
    "guest"
  ];

  # The unit tests only, the binary's and the library's (the schema both
  # roles share): the integration tests drive nix and QEMU, which the build
  # sandbox does not have (CI runs them).
  cargoTestFlags = [
    "--bins"
    "--lib"
  ];

  # No `-rpath $out/lib` in the binary. stdenv's multiple-outputs hook adds
  # the rpath of the `outputLib` output, which is `out` here (no `lib`
  # output), to every link (pkgs/build-support/setup-hooks/multiple-outputs.sh:
  # `_addRpathPrefix "${!outputLib}"`; pkgs/stdenv/generic/setup.sh,
  # `_addRpathPrefix`, which this variable turns off). On Linux the fixup's
  # `patchelf --shrink-rpath` drops the unused entry again; darwin has no
  # such step, so the binary in `guest` would name `out`, whose wrapper names
  # `guest`: a reference cycle between outputs, which Nix refuses. The
  # binary links no library of its own outputs.
  NIX_NO_SELF_RPATH = true;

  nativeBuildInputs = [
    installShellFiles
    makeWrapper
  ];

  # One binary, two roles: argv[0] `nixos-shell-guest` selects the guest.
  # Completions and the man page come from the binary's clap definitions (hidden
  # flags), so they need a binary this platform can run: none when cross-built.
  postInstall =
    ''
      mkdir -p $guest/bin
      mv $out/bin/nixos-shell $guest/bin/nixos-shell
      ln -s nixos-shell $guest/bin/nixos-shell-guest
      makeWrapper $guest/bin/nixos-shell $out/bin/nixos-shell \
        --set-default NIXOS_SHELL_MODULE ${moduleTree}/nixosModules/nixos-shell \
        --set-default NIXOS_SHELL_NIXPKGS ${nixpkgs}
    ''
    + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd nixos-shell \
        --bash <($out/bin/nixos-shell --generate-completions bash) \
        --zsh <($out/bin/nixos-shell --generate-completions zsh) \
        --fish <($out/bin/nixos-shell --generate-completions fish)
      $out/bin/nixos-shell --generate-man-page > nixos-shell.1
      installManPage nixos-shell.1
    '';

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.mit;
    mainProgram = "nixos-shell";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
