# The CLI from the outside: a node runs `nixos-shell` as an ordinary user on
# an inner VM built into the node's store, with `--command`, nested under
# TCG, and checks what the user relies on: home and cwd at the same paths,
# the command's output as it printed it, its exit status, files it writes
# into the home owned by the user, and no QEMU or virtiofsd left behind.
{
  self,
  pkgs,
}:
let
  inherit (pkgs) lib;
  inherit (pkgs.stdenv.hostPlatform) system;

  # The VM a user would build with `nix build`; it boots under TCG inside
  # the node, so it carries as little as boots. Its disk image stays the
  # default one: this first run creates it, and the run script's messages
  # about that must stay out of the command's output too.
  innerVm = self.lib.mkVm {
    inherit system;
    modules = [
      {
        documentation.enable = false;
        virtualisation.memorySize = 1024;
      }
    ];
  };
  inner = innerVm.config.system.build.nixos-shell;

  home = "/home/alice";
  cwd = "${home}/project";
  marker = "written on the node";

  # One boot answers every question: a nested TCG boot takes minutes.
  command = lib.concatStringsSep "; " [
    "pwd"
    ''echo "$HOME"''
    "cat ${cwd}/marker"
    "echo written in the guest > ${cwd}/from-guest"
    "exit 7"
  ];

  asAlice = script: "su -l alice -c ${lib.escapeShellArg script}";

  # Without a terminal, the command's streams are nixos-shell's own. They go
  # to files outside the shared home, out of the guest's reach. The node
  # may have /dev/kvm (nested virtualisation on the builder), and the run
  # script asks for accel=kvm:tcg: force TCG, as a user without KVM has it,
  # whatever the builder offers.
  run = asAlice (
    lib.concatStringsSep " " [
      "cd ${cwd} &&"
      "nixos-shell ${inner} --command ${lib.escapeShellArg command} -- -machine accel=tcg"
      "< /dev/null > /tmp/nixos-shell.stdout 2> /tmp/nixos-shell.stderr"
    ]
  );

  # Seconds for that run; the node's boot and the checks fit in the rest.
  timeout = 60 * 60;
in
pkgs.testers.runNixOSTest {
  name = "nixos-shell-cli";

  # The driver's own limit (nixos/lib/testing/driver.nix, globalTimeout,
  # 1 hour by default) and the derivation's (nixos/lib/testing/meta.nix,
  # meta.timeout, also 1 hour by default), which a CI that honours
  # meta.timeout (Hydra) applies to the whole build: both past the nested
  # run's hour.
  globalTimeout = timeout + 30 * 60;
  meta.timeout = timeout + 45 * 60;

  nodes.machine = {
    # A TCG guest of 1 GiB with its QEMU and virtiofsd, and the node itself.
    virtualisation.memorySize = 4096;
    virtualisation.cores = 2;

    # The inner VM's closure in the node's store and Nix database, as
    # `nix copy` leaves it: nixos-shell runs a build result without
    # evaluating or building anything.
    virtualisation.additionalPaths = [ inner ];

    environment.systemPackages = [ self.packages.${system}.nixos-shell ];
    users.users.alice.isNormalUser = true;
  };

  testScript = ''
    def stderr_tail() -> str:
        return machine.succeed("tail -n 100 /tmp/nixos-shell.stderr")


    machine.start()
    machine.wait_for_unit("multi-user.target")
    machine.succeed(${builtins.toJSON (asAlice "mkdir ${cwd} && echo ${marker} > ${cwd}/marker")})

    with subtest("nixos-shell --command, nested under TCG, as seen from the node"):
        status, _ = machine.execute(${builtins.toJSON run}, timeout=${toString timeout})
        assert status == 7, f"nixos-shell exited with {status}, not the command's 7:\n{stderr_tail()}"

        stdout = machine.succeed("cat /tmp/nixos-shell.stdout")
        expected = ${builtins.toJSON "${cwd}\n${home}\n${marker}\n"}
        assert stdout == expected, f"stdout {stdout!r}, not {expected!r}:\n{stderr_tail()}"

        written = machine.succeed("stat -c '%U' ${cwd}/from-guest; cat ${cwd}/from-guest")
        assert written == "alice\nwritten in the guest\n", written

        # nixos-shell reaps its own virtiofsd; the run script's own (for the
        # store, in nixpkgs that shares it over virtiofs) leaves when QEMU
        # hangs up, a moment later.
        machine.wait_until_fails("pgrep -u alice -l 'qemu|virtiofsd'", timeout=30)
  '';
}
