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
  lib,
  modulesPath,
  pkgs,
  ...
}:
let
  share =
    dir: tagAndOptions:
    "-virtfs local,path=$TMPDIR/${dir},security_model=none,mount_tag=${tagAndOptions}";
  # The serial port QEMU gives the guest: ttyS0 on x86, ttyAMA0 on aarch64
  # (nixos/lib/qemu-common.nix, qemuSerialDevice). callPackage, because that
  # file's arguments changed (`{ lib, pkgs }`, later `{ lib, stdenv }`).
  inherit (pkgs.callPackage (modulesPath + "/../lib/qemu-common.nix") { }) qemuSerialDevice;
in
{
  imports = [ self.nixosModules.nixos-shell ];

  # The test driver owns QEMU's stdio and the first virtio console (hvc0,
  # its root shell): no console on stdio, and the guest role's messages go
  # to the serial log instead of into the driver's shell. (The driver's
  # instrumentation gives root its password through hashedPasswordFile, so
  # the module leaves root's password alone: no warning.)
  nixos-shell.console.enable = false;
  nixos-shell.console.device = "/dev/${qemuSerialDevice}";

  virtualisation.memorySize = 1024;
  virtualisation.qemu.options = lib.mapAttrsToList share (
    {
      session = "nixos-shell";
      home = "home";
    }
    // shares
  );
}
