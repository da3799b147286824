# The configuration whose manifest is known in advance (expected.json):
# shares of every kind, as `checks/linux/manifest.nix` (nix flake check) and the
# cargo tests (tests/module/manifest.rs, with a stand-in nixpkgs) build it.
{
  system.name = "dev";
  # Set, so that the manifest's copy is known in advance.
  system.stateVersion = "25.05";
  virtualisation.memorySize = 768;
  nixos-shell.mounts = {
    mountHomeReadOnly = true;
    cache = "mmap";
    extraMounts = {
      # Attribute order is not guest-path order: the manifest sorts.
      "/var/www" = {
        target = "/srv/www";
        cache = "none";
        readOnly = true;
      };
      "/srv/data" = "/data";
      # A path stays the host's path, never copied into the store.
      "/var" = /srv/var;
    };
  };
}
