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

  assertions = lib.concatLists (
    lib.mapAttrsToList (
      guestPath: mount:
      let
        target = toString mount.target;
        where = ''nixos-shell.mounts.extraMounts."${guestPath}"'';
        # Users of the original nixos-shell, whose evaluation was always
        # impure, compute mounts from builtins.getEnv; a pure evaluation
        # (a flake, nixos-shell's default) reads "" instead.
        pure = ''a pure evaluation reads no environment (builtins.getEnv gives ""): if the configuration computes it from the environment, run nixos-shell with --impure.'';
      in
      [
        {
          assertion = guestPath != "";
          message = "${where}: the guest path (the attribute name) is empty; ${pure}";
        }
        {
          assertion = guestPath == "" || (lib.hasPrefix "/" guestPath && guestPath != "/");
          message = ''${where}: the attribute name is where the share appears in the VM and must be an absolute path other than "/".'';
        }
        {
          assertion = target != "";
          message = "${where}: the host directory (target) is empty; ${pure}";
        }
        {
          assertion = target == "" || lib.hasPrefix "/" target;
          message = ''${where}: the host directory ${builtins.toJSON target} is not absolute; write an absolute path, or a path such as ./data.'';
        }
      ]
    ) cfg.extraMounts
  );
}
