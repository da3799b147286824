# The guest side of the host facts. `nixos-shell-guest` (the guest role of
# the nixos-shell binary) runs once at boot, before any login is possible:
# it mounts the session share (9p tag `nixos-shell`) the CLI passes to QEMU,
# mounts the home and the other shares, installs root's authorized keys,
# writes the login environment and sizes the console, or runs the user's
# `--command` on the console and powers the VM off. Without that share (a VM
# started by hand) it does nothing.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.nixos-shell;
  # The package's `guest` output holds the bare binary, without the host
  # command's references (this nixpkgs' source, the module).
  guestRole = "${cfg.package.guest or cfg.package}/bin/nixos-shell-guest";
  # Written by the guest role; see src/schema/facts.rs.
  inherit ((import ./lib.nix).guestPaths) loginEnv;
in
{
  systemd.services.nixos-shell-guest = {
    description = "Apply the host facts of nixos-shell (shares, keys, login environment)";
    wantedBy = [ "multi-user.target" ];
    after = [
      "local-fs.target"
      "systemd-modules-load.service"
    ];
    # Nobody logs in before the facts are applied. Not before sshd.socket:
    # sockets come before basic.target, which this unit's default
    # dependencies put before it, so that would be an ordering cycle with
    # `services.openssh.startWhenNeeded`. A connection accepted before the
    # keys are written is refused and can be retried; logins on the
    # consoles wait.
    before = [
      "getty.target"
      "getty@tty1.service"
      "serial-getty@hvc0.service"
      "systemd-user-sessions.service"
      "sshd.service"
    ];
    # modprobe, for the 9p modules when they are not loaded yet.
    path = [ pkgs.kmod ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${guestRole} --console ${cfg.console.device}";
      # A --command may run for as long as the user likes.
      TimeoutStartSec = "infinity";
      StandardOutput = "journal+console";
      StandardError = "journal+console";
    };
  };

  # The console follows the host terminal's size while the VM runs: the
  # follower reads each size from the resize port of nixos-shell's
  # virtio-serial device and sets it on the console, whose foreground
  # program gets SIGWINCH. A unit of its own, not ordered after the guest
  # role, which may be running an interactive --command all along. Only the
  # console in nixos-shell's terminal has that terminal's size.
  systemd.services.nixos-shell-resize = lib.mkIf cfg.console.enable {
    description = "Keep the console at the size of nixos-shell's terminal";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      ExecStart = "${guestRole} --console ${cfg.console.device} --follow-resizes";
      # A VM started without nixos-shell has no resize port; the follower
      # says so in the journal, not on the console.
      StandardError = "journal";
    };
  };

  # Login shells start where the user started nixos-shell, with the host's
  # HOME, TERM and PATH (see nixos-shell.inheritPath) and terminal size.
  environment.loginShellInit = ''
    if [ -r ${loginEnv} ]; then
      . ${loginEnv}
    fi
  '';
}
