# Shared folders: host directories mounted in the VM over 9p.
{
  nixos-shell.mounts = {
    # Your home directory is mounted at the same path (the default);
    # `nixos-shell --no-home` turns that off for one run.
    mountHome = true;
    # Your Nix profile too, so your host tools work in the VM (the default
    # when host and guest run the same platform).
    mountNixProfile = true;
    # The default 9p cache mode of every share: none, loose, fscache or mmap.
    # "loose" is fast; "none" sees host-side changes at once.
    cache = "loose";

    # More shares, keyed by where they appear in the VM.
    extraMounts = {
      # A path or a string is the host directory. In a flake, a relative
      # path like ./. points into the flake's store copy: write an absolute
      # string for a live host directory.
      "/mnt/examples" = ./.;

      # An attribute set also sets the cache mode and read-only flag.
      "/mnt/nixos-shell" = {
        target = ./..;
        cache = "none";
        readOnly = true;
      };
    };
  };
}
