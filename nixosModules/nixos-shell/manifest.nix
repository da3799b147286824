# What the CLI builds: `config.system.build.nixos-shell`, the VM's run script
# next to a manifest of what the CLI must know to start it (its shares and
# their tags, cache modes, the VM's name, ...), so that starting a VM needs
# one `nix build` and no further evaluation. The layout and the manifest's
# fields are a contract with src/schema/manifest.rs.
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  cfg = config.nixos-shell;
  qemu = config.virtualisation.qemu;
  # The run script is made for the host, which may not be the guest's
  # platform (see virtualisation.host.pkgs).
  hostPkgs = config.virtualisation.host.pkgs;
  inherit (config.system) name;

  manifest = (import ./lib.nix).mkManifest {
    inherit name;
    inherit (pkgs.stdenv.hostPlatform) system;
    inherit (config.virtualisation) diskImage;
    inherit (cfg) inheritPath mounts;
    inherit (cfg.mounts) msize;
    inherit (config.virtualisation) memorySize;
    # NixOS keys stateful defaults on it (nixos/modules/misc/version.nix);
    # an image made under one keeps that data when it changes.
    inherit (config.system) stateVersion;
    hostNix = cfg.hostNix.enable;
    # The guest's store is the host's when qemu-vm.nix mounts the host's
    # store (`virtualisation.mountHostNixStore`, default
    # `!useNixStoreImage && !useBootLoader`: shared at /nix/.ro-store and
    # bound or overlaid at /nix/store) and no store image stands in its
    # place (`useNixStoreImage` builds an image of the system's closure
    # alone, so nothing built later appears in it):
    # nixos/modules/virtualisation/qemu-vm.nix, options mountHostNixStore,
    # useNixStoreImage, sharedDirectories.nix-store. Unknown (null) where
    # the option is not declared. `--switch` and the host's nix in the
    # guest both need it.
    hostStore =
      if options ? virtualisation.mountHostNixStore then
        config.virtualisation.mountHostNixStore && !(config.virtualisation.useNixStoreImage or false)
      else
        null;
    # The host's virtiofsd: the CLI runs it on the host, next to QEMU. Only
    # forced for virtiofs, so a 9p VM (a darwin host) never needs it.
    virtiofsd = "${hostPkgs.virtiofsd}/bin/virtiofsd";
    # The system `nixos-shell --switch` activates in the running VM.
    toplevel = config.system.build.toplevel;
    # With system.switch.enable = false the toplevel has no
    # bin/switch-to-configuration
    # (nixos/modules/system/activation/switchable-system.nix).
    switchable = if options ? system.switch.enable then config.system.switch.enable else null;
    # qemu-vm.nix loads the guest's Nix database from this at boot only
    # (`regInfo = hostPkgs.closureInfo { rootPaths =
    # config.virtualisation.additionalPaths; }`, passed as `regInfo=` on the
    # kernel command line and loaded with `nix-store --load-db`;
    # nixos/modules/virtualisation/qemu-vm.nix): the same derivation, so the
    # build makes nothing more. A switch loads the new one, or the guest's
    # nix would take the running system for garbage.
    registration =
      if options ? virtualisation.additionalPaths then
        "${hostPkgs.closureInfo { rootPaths = config.virtualisation.additionalPaths; }}/registration"
      else
        null;
    # Since nixpkgs shares the store over virtiofs, its run script backs the
    # guest's memory with a shared memfd of `memorySize` MiB, named mem0
    # (qemu-vm.nix, `virtualisation.qemu.enableSharedMemory`); older
    # revisions have neither the option nor the backend.
    memoryBackend =
      if options ? virtualisation.qemu.enableSharedMemory && qemu.enableSharedMemory then
        {
          id = "mem0";
          size = config.virtualisation.memorySize;
        }
      else
        null;
  };
in
{
  system.build.nixos-shell =
    hostPkgs.runCommand "nixos-shell-${name}"
      {
        manifest = builtins.toJSON manifest;
        passAsFile = [ "manifest" ];
        preferLocalBuild = true;
        allowSubstitutes = false;
        passthru = {
          inherit manifest;
        };
        meta.mainProgram = "run-${name}-vm";
      }
      ''
        mkdir -p $out/bin $out/share/nixos-shell
        ln -s ${config.system.build.vm}/bin/run-${name}-vm $out/bin/run-${name}-vm
        cp "$manifestPath" $out/share/nixos-shell/manifest.json
      '';
}
