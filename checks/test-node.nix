# A NixOS test node with the nixos-shell module, shared by the VM tests.
# The test script plays the CLI: before the VM starts it writes facts.json
# (src/schema/facts.rs) into $TMPDIR/session and fills $TMPDIR/home; the
# node shares both with the `-virtfs` arguments the CLI would append to the
# run script. `shares` adds more: { "<dir under $TMPDIR>" = "<tag>,<opts>"; }.
{
  self,
  shares ? { },
}:
{
  config,
  lib,
  ...
}:
let
  share =
    dir: tagAndOptions:
    "-virtfs local,path=$TMPDIR/${dir},security_model=none,mount_tag=${tagAndOptions}";
in
{
  imports = [ self.nixosModules.nixos-shell ];

  # The test driver owns QEMU's stdio and the first virtio console (hvc0,
  # its root shell): no console on stdio, and the guest role's messages go
  # to the serial log instead of into the driver's shell.
  nixos-shell.console.enable = false;
  systemd.services.nixos-shell-guest.serviceConfig.ExecStart =
    lib.mkForce "${config.nixos-shell.package}/bin/nixos-shell-guest --console /dev/ttyS0";

  virtualisation.memorySize = 1024;
  virtualisation.qemu.options = lib.mapAttrsToList share (
    {
      session = "nixos-shell";
      home = "home";
    }
    // shares
  );
}
