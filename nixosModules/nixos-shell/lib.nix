# Pure helpers of the nixos-shell module. They use builtins only, so that
# checks/eval/ can test them with a bare `nix-instantiate`, without nixpkgs.
{
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
    msize the guest mounts the shares with; `memoryBackend` the shared
    memory backend the run script gives QEMU (`{ id, size }`, size in MiB),
    or null.
  */
  mkManifest =
    {
      name,
      system,
      diskImage,
      inheritPath,
      mounts,
      msize,
      memoryBackend,
    }:
    {
      version = 2;
      inherit
        name
        system
        diskImage
        inheritPath
        memoryBackend
        ;
      mounts = {
        inherit (mounts)
          mountHome
          mountHomeReadOnly
          mountNixProfile
          cache
          ;
        inherit msize;
        # Sorted by guest path, so a parent comes before its children.
        extraMounts = map (
          guestPath:
          let
            mount = mounts.extraMounts.${guestPath};
          in
          {
            inherit guestPath;
            # toString: a path stays where it is on the host, never copied
            # into the store.
            target = toString mount.target;
            inherit (mount) tag cache readOnly;
          }
        ) (builtins.attrNames mounts.extraMounts);
      };
    };
}
