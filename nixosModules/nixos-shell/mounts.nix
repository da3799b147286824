# The shares. QEMU gets them from the CLI at run time (over virtiofs, one
# virtiofsd per share, or over 9p, one `-virtfs` per share, with the tags the
# manifest lists) and the guest role mounts them before the login; the build
# only makes sure the guest can.
{
  config,
  lib,
  ...
}:
let
  cfg = config.nixos-shell.mounts;
in
{
  # 9p over virtio (always: the session share is 9p), and virtiofs when the
  # shares use it; loaded early by systemd-modules-load; the guest role also
  # tries modprobe itself.
  boot.kernelModules = [
    "9p"
    "9pnet_virtio"
  ]
  ++ lib.optional (cfg.protocol == "virtiofs") "virtiofs";

  assertions = lib.mapAttrsToList (guestPath: mount: {
    assertion = lib.hasPrefix "/" guestPath && guestPath != "/";
    message = ''
      nixos-shell.mounts.extraMounts."${guestPath}": the attribute name is where the
      share appears in the VM and must be an absolute path other than "/".
    '';
  }) cfg.extraMounts;
}
