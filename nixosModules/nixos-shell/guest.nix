# The guest side of the host facts: the guest role of the nixos-shell
# binary (`nixos-shell-guest`), one unit per step (src/guest/mod.rs). The
# facts come from the session share (9p tag `nixos-shell`) the CLI passes to
# QEMU; a VM started without it (by its own run script) boots as usual, and
# no unit fails.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.nixos-shell;
  # The package's `guest` is its crate, the bare binary, without the
  # wrapper's references (this nixpkgs' source, the module): package.nix.
  guestRole = "${cfg.package.guest or cfg.package}/bin/nixos-shell-guest";
  # Written by the guest role; see src/schema/facts.rs.
  inherit ((import ./lib.nix).guestPaths) loginEnv;
  # The console's getty: serial-getty@hvc0 with nixos-shell's console;
  # tty1's is getty@tty1, started by logind as autovt@tty1 on a switch to
  # the terminal (systemd's units/getty@.service.in and autovt@.service
  # alias; nixos/modules/system/boot/systemd/logind.nix adds
  # autovt@.service). A unit that is never started orders nothing. Not
  # systemd-user-sessions.service: logind orders every non-root session
  # after it (systemd's src/login/logind-session.c, the "login session
  # barrier"), so a command before it held back every ssh login and
  # display manager, and kept /run/nologin, for as long as it ran.
  consoleLogins = [
    "getty.target"
    "getty@tty1.service"
    "autovt@tty1.service"
    "serial-getty@hvc0.service"
  ];
in
{
  # Mounts the shares (and writes root's keys and login environment) before
  # every service that might use them. Services with default dependencies
  # start after sysinit.target, which comes after local-fs.target (systemd's
  # bootup(7)); this unit sits between the two, where systemd's own early
  # units sit (DefaultDependencies = false, after local-fs.target, before
  # sysinit.target; systemd-tmpfiles-setup below). (qemu-vm.nix has no unit
  # there: it registers the VM's store paths with `nix-store --load-db` in
  # `boot.postBootCommands`, from the `regInfo=` kernel parameter,
  # nixos/modules/virtualisation/qemu-vm.nix.) After the local file
  # systems a share may be mounted onto (a separate /home, say), before a
  # web server on an extraMounts path or anything reading $HOME starts. It
  # loads the 9p and virtiofs modules itself; systemd-modules-load is only
  # ordered before sysinit.target, not before local-fs.target. It comes
  # before systemd-tmpfiles-setup too, which sits in the same place
  # (systemd's units/systemd-tmpfiles-setup.service: after local-fs.target,
  # before sysinit.target): a tmpfiles rule for a path in a share (a
  # service's `d /var/www/...`) applies to the share, as it does after the
  # original's initrd mounts, not to the directory the mount then hides.
  systemd.services.nixos-shell-guest = {
    description = "Mount nixos-shell's shares and apply the host facts for root";
    wantedBy = [ "sysinit.target" ];
    after = [
      "local-fs.target"
      "systemd-modules-load.service"
    ];
    before = [
      "sysinit.target"
      "systemd-tmpfiles-setup.service"
      "shutdown.target"
    ];
    conflicts = [ "shutdown.target" ];
    unitConfig.DefaultDependencies = false;
    # Once per boot: NixOS restarts a changed unit on a switch
    # (`restartIfChanged`, default true, nixos/lib/systemd-unit-options.nix;
    # switch-to-configuration reads it as X-RestartIfChanged), and this one
    # would mount every share again over the first.
    restartIfChanged = false;
    # modprobe, for the 9p modules when they are not loaded yet.
    path = [ pkgs.kmod ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${guestRole} prepare";
      # A oneshot has no start timeout by default (systemd.service(5),
      # TimeoutStartSec=), and everything after sysinit.target waits for
      # this one. The role gives up a share that does not mount in 20 s
      # (src/guest/mount.rs) and the boot goes on without it; this bounds
      # whatever else might block it.
      TimeoutStartSec = "5min";
      StandardOutput = "journal+console";
      StandardError = "journal+console";
    };
  };

  # The user's --command, once the system is up, on the console before its
  # login prompt (a getty on the same terminal would fight the command for
  # it), or on nixos-shell's virtio ports; then the VM powers off. Every
  # other service, and every other login, starts as usual while it runs;
  # multi-user.target, which waits for the console's getty (getty.target),
  # is reached only when it ends, and so what is ordered after that target
  # (graphical.target) waits too: a VM with --command counts as booted when
  # the command is done (README.md, "How host facts reach the VM").
  systemd.services.nixos-shell-command = {
    description = "Run nixos-shell's --command";
    wantedBy = [ "multi-user.target" ];
    after = [ "nixos-shell-guest.service" ];
    before = consoleLogins;
    # Once per boot, like nixos-shell-guest: a switch must not run the
    # command again (or stop the one that runs).
    restartIfChanged = false;
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${guestRole} command --console ${cfg.console.device}";
      # A --command may run for as long as the user likes.
      TimeoutStartSec = "infinity";
      StandardOutput = "journal+console";
      StandardError = "journal+console";
    };
  };

  # The console follows the host terminal's size while the VM runs: the
  # follower, the console size's one owner, asks for the size on the resize
  # port of nixos-shell's virtio-serial device and sets each size the host
  # sends on the console, whose foreground program gets SIGWINCH. After
  # nixos-shell-guest (it reads which ports the facts offer), before the
  # command and the console's login, which start at the terminal's latest
  # size: Type=forking, whose start ends when the unit's process returns
  # (systemd.service(5)), which it does once the host's answer is applied;
  # its child follows while the VM runs. A unit of its own, not ordered
  # after the command, which may be an interactive one that runs all
  # along. Only the console in nixos-shell's terminal has that terminal's
  # size.
  systemd.services.nixos-shell-resize = lib.mkIf cfg.console.enable {
    description = "Keep the console at the size of nixos-shell's terminal";
    wantedBy = [ "multi-user.target" ];
    after = [ "nixos-shell-guest.service" ];
    before = [ "nixos-shell-command.service" ] ++ consoleLogins;
    # One follower per boot, as the console has one terminal: a switch
    # leaves it running (see nixos-shell-attach).
    restartIfChanged = false;
    serviceConfig = {
      Type = "forking";
      ExecStart = "${guestRole} follow-resizes --console ${cfg.console.device}";
      # A VM started without nixos-shell has no resize port; the follower
      # says so in the journal, not on the console.
      StandardError = "journal";
    };
  };

  # `nixos-shell --attach` from another terminal or a script: the guest
  # role serves every attached session (a login shell, or a command) over
  # nixos-shell's attach port, without sshd, a key or a network. After
  # nixos-shell-guest, whose facts say whether the host offers the port; a
  # VM started without nixos-shell has none, and the server says so in the
  # journal and ends. Stopping the unit ends its sessions with it.
  systemd.services.nixos-shell-attach = {
    description = "Serve nixos-shell --attach sessions";
    wantedBy = [ "multi-user.target" ];
    after = [ "nixos-shell-guest.service" ];
    # `nixos-shell --switch` runs through one of its sessions: a switch to a
    # build with another guest role would otherwise stop this unit, and the
    # switch's session with it, halfway. switch-to-configuration skips a
    # changed unit with X-RestartIfChanged=false ("NOT restarting the
    # following changed units"; pkgs/by-name/sw/switch-to-configuration-ng,
    # handle_modified_unit); the new server runs from the next boot.
    restartIfChanged = false;
    serviceConfig = {
      ExecStart = "${guestRole} serve-attach";
      Restart = "on-failure";
      StandardError = "journal";
    };
  };

  # Nix in the guest builds into the host's store: the guest role relays
  # /run/nixos-shell/host-nix.sock, which root's sessions name in
  # NIX_REMOTE, to a nix-daemon nixos-shell starts on the host per
  # connection (src/guest/linux/host_nix.rs). After nixos-shell-guest,
  # whose facts say whether the host offers it; without it the server says
  # so in the journal and ends. The guest's own nix-daemon is untouched.
  systemd.services.nixos-shell-host-nix = lib.mkIf cfg.hostNix.enable {
    description = "Relay the guest's nix to the host's nix-daemon";
    wantedBy = [ "multi-user.target" ];
    after = [ "nixos-shell-guest.service" ];
    serviceConfig = {
      ExecStart = "${guestRole} serve-host-nix";
      Restart = "on-failure";
      StandardError = "journal";
    };
  };

  # Root's login shells start where the user started nixos-shell, with the
  # host's HOME, TERM (and its terminfo entry) and PATH (see
  # nixos-shell.inheritPath). NixOS puts this into /etc/profile, which every user's login shell
  # reads (nixos/modules/programs/bash/bash.nix, environment.etc.profile;
  # zsh's /etc/zprofile, fish's login config): the script itself applies
  # the facts to root's logins only.
  environment.loginShellInit = ''
    if [ -r ${loginEnv} ]; then
      . ${loginEnv}
    fi
  '';
}
