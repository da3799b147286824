# `nixos-shell --command`: the command unit runs it in the host's cwd
# instead of a login, hands its exit status back in result.json and powers
# the VM off.
{
  self,
  pkgs,
}:
let
  home = "/home/alice";
  cwd = "${home}/project";
in
pkgs.testers.runNixOSTest {
  name = "nixos-shell-command";

  nodes.machine = import ../lib/test-node.nix { inherit self; };

  testScript =
    { nodes, ... }:
    let
      facts = {
        version = 1;
        user = "alice";
        inherit home cwd;
        mounts = [
          {
            tag = "home";
            guestPath = home;
            cache = "none";
            inherit (nodes.machine.nixos-shell.mounts) msize;
          }
        ];
        command = "pwd > ${home}/command-cwd; exit 7";
      };
    in
    ''
      import json

      state = machine.state_dir
      for d in ["session", "home/project"]:
          (state / d).mkdir(parents=True, exist_ok=True)
      (state / "session" / "facts.json").write_text(${builtins.toJSON (builtins.toJSON facts)})

      machine.start()
      machine.wait_for_shutdown()

      result = json.loads((state / "session" / "result.json").read_text())
      assert result == {"version": 1, "exitCode": 7}, result
      assert (state / "home" / "command-cwd").read_text() == "${cwd}\n"
    '';
}
