# Pure helpers of the nixos-shell module and of the CLI's own Nix
# expressions (src/host/nix/legacy.nix, src/host/nix/flake-fallback.nix), so that
# each fact is written once. They use builtins only, so that checks/eval/
# can test them with a bare `nix-instantiate`, without nixpkgs.
rec {
  /**
    The priority of nixos-shell's defaults (`lib.mkOverride`): above
    NixOS's own (`mkDefault`, 1000), below any plain setting of the user
    (100). The original nixos-shell used the same.
  */
  defaultPriority = 900;

  /**
    Where the guest role writes in the guest. src/schema/facts.rs names the
    same paths for the Rust side; a test compares the two.
  */
  guestPaths = {
    loginEnv = "/run/nixos-shell/login-env.sh";
    authorizedKeysDir = "/run/nixos-shell/authorized-keys";
  };

  /**
    The nixpkgs the CLI's expressions evaluate a VM with: `preferred` (a
    flake's own input) when given, else `<nixpkgs>` from the search path,
    else `builtIn` (the nixpkgs the CLI was packaged with, "" for none),
    else an error with `message`.
  */
  nixpkgsPath =
    {
      preferred ? null,
      builtIn,
      message,
    }:
    let
      fromSearchPath = builtins.tryEval (builtins.findFile builtins.nixPath "nixpkgs");
    in
    if preferred != null then
      preferred
    else if fromSearchPath.success then
      toString fromSearchPath.value
    else if builtIn != "" then
      builtIn
    else
      throw message;

  /**
    The modules that make a VM run on `hostSystem` (`--host-system`; ""
    for the guest's own platform): its run script built with that
    platform's package set.
  */
  hostModules =
    hostSystem:
    if hostSystem == "" then
      [ ]
    else
      [ ({ pkgs, ... }: { virtualisation.host.pkgs = import pkgs.path { system = hostSystem; }; }) ];

  /**
    The 9p mount tag of the extra mount at guest path `name`: "a" followed by
    the MD5 of the name, cut to 31 bytes (QEMU takes tags shorter than 32
    bytes; the "a" keeps a tag from starting with a digit). Same function as
    the original nixos-shell, so existing tags stay stable.
  */
  mountTag = name: builtins.substring 0 31 ("a" + builtins.hashString "md5" name);

  /**
    The build manifest (src/schema/manifest.rs): what the CLI needs to know
    about a VM without evaluating it again. Field names are the option names.

    `mounts` is the value of `config.nixos-shell.mounts`; `msize` the 9p
    msize the guest mounts the shares with; `virtiofsd` the daemon the CLI
    starts per share when `mounts.protocol` is "virtiofs" (a path, else
    null); `memorySize` the guest's memory in MiB, the size of the shared
    memory backend the CLI adds for virtiofs when the run script has none;
    `memoryBackend` the shared memory backend the run script gives QEMU
    (`{ id, size }`, size in MiB), or null; `stateVersion` the
    configuration's `system.stateVersion`, which the CLI keeps beside a
    persistent disk image it creates (null: not known); `hostNix` whether
    the guest's nix may build into the host's store
    (`nixos-shell.hostNix.enable`), `hostStore` whether the guest's store
    shows the host's.
  */
  mkManifest =
    {
      name,
      system,
      diskImage,
      inheritPath,
      mounts,
      msize,
      virtiofsd,
      memorySize,
      memoryBackend,
      stateVersion ? null,
      toplevel ? null,
      switchable ? null,
      registration ? null,
      hostNix ? false,
      hostStore ? null,
    }:
    {
      version = 5;
      # The guest serves `nixos-shell --attach` (guest.nix,
      # nixos-shell-attach.service).
      attach = true;
      inherit
        name
        system
        diskImage
        inheritPath
        memorySize
        memoryBackend
        stateVersion
        hostNix
        hostStore
        ;
      # What `nixos-shell --switch` compares and activates, and whether it
      # can (with hostStore: a system built later appears in the guest's
      # store): the system's toplevel, and whether the system carries
      # bin/switch-to-configuration, and the registration of the system's
      # closure for the guest's Nix database. null: unknown to this module.
      switch = {
        inherit toplevel switchable registration;
      };
      mounts = {
        inherit (mounts)
          mountHome
          mountHomeReadOnly
          mountNixProfile
          cache
          protocol
          ;
        inherit msize;
        virtiofsd = if mounts.protocol == "virtiofs" then virtiofsd else null;
        # Sorted by guest path, so a parent comes before its children.
        extraMounts = map (
          name:
          let
            mount = mounts.extraMounts.${name};
          in
          {
            # "/etc/nixos/" is /etc/nixos, as mount(8) takes it.
            guestPath = withoutTrailingSlash name;
            # toString: a path stays where it is on the host, never copied
            # into the store.
            target = toString mount.target;
            inherit (mount) tag cache readOnly;
          }
        ) (builtins.attrNames mounts.extraMounts);
      };
    };

  /**
    `path` without the slashes it ends with ("/" stays "/").
  */
  withoutTrailingSlash =
    path:
    let
      stripped = builtins.match "(.*[^/])/+" path;
    in
    if stripped == null then path else builtins.head stripped;
}
