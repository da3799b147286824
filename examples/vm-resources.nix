# Memory, CPUs and disk. `nixos-shell --memory 2G --cores 4` overrides the
# first two for one run without a rebuild.
{
  virtualisation = {
    # MiB; nixos-shell's default is 500.
    memorySize = 1024;
    cores = 2;

    # MiB. Takes effect for a new disk image only: delete the old one
    # (./nixos.qcow2 by default) or run with `nixos-shell --ephemeral`.
    diskSize = 20 * 512;

    # Write new store paths to the disk image instead of a tmpfs, e.g. when
    # the VM serves as a remote builder.
    writableStoreUseTmpfs = false;
  };
}
