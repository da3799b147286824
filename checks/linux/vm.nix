# Boots a VM built with the module under the NixOS test driver and checks,
# from inside the guest, what a nixos-shell user relies on: root logged in
# on the console, the firewall off, and the guest unit applying host facts
# (home at the host's path, a read-only extra mount, root's keys, the login
# shell's cwd and TERM); then an ssh login as root with the injected key
# through a forwarded port.
# The test script plays the CLI (see ../lib/test-node.nix).
{
  self,
  pkgs,
}:
let
  inherit (pkgs) lib;
  inherit (import ../../nixosModules/nixos-shell/lib.nix) mountTag;

  # The host user's key pair; the public half goes into the host facts.
  sshKeys = pkgs.runCommand "nixos-shell-test-keys" { nativeBuildInputs = [ pkgs.openssh ]; } ''
    mkdir $out
    ssh-keygen -q -t ed25519 -N "" -C alice@host -f $out/id_ed25519
  '';

  home = "/home/alice";
  cwd = "${home}/project";
  dataMount = "/mnt/data";
  sshPort = 2222;
in
pkgs.testers.runNixOSTest {
  name = "nixos-shell";

  nodes.machine = {
    imports = [
      (import ../lib/test-node.nix {
        inherit self;
        # The tag the module derives; the facts below take the module's
        # option, so a mismatch fails the mount.
        shares.data = "${mountTag dataMount},readonly=on";
      })
    ];

    nixos-shell.mounts.extraMounts.${dataMount} = {
      # Where the CLI would find it; the test shares its own directory.
      target = "/srv/data";
      readOnly = true;
    };

    services.openssh.enable = true;
    virtualisation.forwardPorts = [
      {
        from = "host";
        host.address = "127.0.0.1";
        host.port = sshPort;
        guest.port = 22;
      }
    ];
  };

  testScript =
    { nodes, ... }:
    let
      inherit (nodes.machine.nixos-shell.mounts) msize;
      facts = {
        version = 1;
        user = "alice";
        inherit home cwd;
        term = "xterm-256color";
        shell = "bash";
        mounts = [
          {
            tag = "home";
            guestPath = home;
            cache = "loose";
            readOnly = false;
            inherit msize;
          }
          {
            tag = nodes.machine.nixos-shell.mounts.extraMounts.${dataMount}.tag;
            guestPath = dataMount;
            cache = "none";
            readOnly = true;
            inherit msize;
          }
        ];
      };
    in
    ''
      import json
      import os
      import shutil
      import subprocess
      import time

      state = machine.state_dir
      for d in ["session", "home/project", "data"]:
          (state / d).mkdir(parents=True, exist_ok=True)
      facts = json.loads(${builtins.toJSON (builtins.toJSON facts)})
      with open("${sshKeys}/id_ed25519.pub") as public_key:
          facts["authorizedKeys"] = [public_key.read().strip()]
      (state / "session" / "facts.json").write_text(json.dumps(facts))
      (state / "home" / "from-host.txt").write_text("written on the host\n")
      (state / "data" / "readme.txt").write_text("read-only data\n")

      machine.start()
      machine.wait_for_unit("nixos-shell-guest.service")

      with subtest("root is logged in on the console, which says how to quit"):
          machine.wait_until_tty_matches("1", "root@machine")
          machine.succeed("grep -F 'Ctrl-a x' /etc/issue")

      with subtest("the login shell starts in the host's cwd with its TERM"):
          machine.send_chars("echo \"$PWD $TERM\" > /tmp/console-login\n")
          machine.wait_for_file("/tmp/console-login")
          assert machine.succeed("cat /tmp/console-login").strip() == "${cwd} xterm-256color"
          assert machine.succeed("bash --login -c pwd").strip() == "${cwd}"

      with subtest("the firewall is off"):
          machine.fail("systemctl is-active firewall.service")

      with subtest("home is mounted at the host's path, both ways"):
          machine.succeed("grep -F 'written on the host' ${home}/from-host.txt")
          machine.succeed("echo written in the guest > ${home}/from-guest.txt && sync")
          assert (state / "home" / "from-guest.txt").read_text() == "written in the guest\n"

      with subtest("the extra mount is read-only"):
          machine.succeed("grep -F 'read-only data' ${dataMount}/readme.txt")
          machine.fail("touch ${dataMount}/new-file")

      with subtest("root's authorized keys are the host user's"):
          machine.succeed("grep -F alice@host /run/nixos-shell/authorized-keys/root")

      with subtest("ssh as root with the injected key through the forwarded port"):
          machine.wait_for_unit("sshd.service")
          machine.wait_until_succeeds("ip -4 addr show eth0 | grep -F 10.0.2.15")
          key = os.path.join(os.environ.get("TMPDIR", "/tmp"), "id_ed25519")
          shutil.copy("${sshKeys}/id_ed25519", key)
          os.chmod(key, 0o600)
          ssh = [
              "${pkgs.openssh}/bin/ssh", "-F", "/dev/null", "-i", key,
              "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
              "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
              "-p", "${toString sshPort}", "root@127.0.0.1", "id -un",
          ]
          for attempt in range(60):
              login = subprocess.run(ssh, capture_output=True, text=True, timeout=60)
              if login.returncode == 0:
                  break
              time.sleep(1)
          assert login.returncode == 0, login.stderr
          assert login.stdout.strip() == "root", login.stdout

      machine.shutdown()
    '';
}
