# A NixOS test node with the nixos-shell module, shared by the VM tests.
# The test script plays the CLI: before the VM starts it writes facts.json
# (src/schema/facts.rs) into $TMPDIR/session and fills $TMPDIR/home; the
# node shares both with the `-virtfs` arguments the CLI would append to the
# run script. `shares` adds more: { "<dir under $TMPDIR>" = "<tag>,<opts>"; }.
{
  self,
  shares ? { },
}:
{ lib, ... }:
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
  nixos-shell.console.device = "/dev/ttyS0";

  # The test driver's instrumentation gives root an empty password through
  # hashedPasswordFile; our console default would be a second password
  # option, which NixOS warns about.
  users.users.root.initialHashedPassword = lib.mkForce null;

  virtualisation.memorySize = 1024;
  virtualisation.qemu.options = lib.mapAttrsToList share (
    {
      session = "nixos-shell";
      home = "home";
    }
    // shares
  );
}
