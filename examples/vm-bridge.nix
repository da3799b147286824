# Bridge networking instead of QEMU's user-mode network. The VM gets an
# address on br0's network; --forward and QEMU_NET_OPTS no longer apply.
# qemu-bridge-helper must be setuid root: on NixOS,
# virtualisation.libvirtd.enable = true provides
# /run/wrappers/bin/qemu-bridge-helper (elsewhere, your distribution's path),
# and /etc/qemu/bridge.conf must say `allow br0`.
{ lib, ... }:
{
  # mkForce: replace NixOS's user-mode network rather than add to it.
  virtualisation.qemu.networkingOptions = lib.mkForce [
    "-nic bridge,br=br0,model=virtio-net-pci,mac=52:54:00:12:34:56,helper=/run/wrappers/bin/qemu-bridge-helper"
  ];
}
