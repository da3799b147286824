# Boot with EFI: the kernel is still loaded directly, with OVMF as firmware.
# On aarch64 the firmware file is ${pkgs.OVMF.fd}/FV/QEMU_EFI.fd.
# For a real EFI boot loader on the disk image instead, set
# virtualisation.useBootLoader, virtualisation.useEFIBoot and
# boot.loader.systemd-boot.enable.
{ pkgs, ... }:
{
  virtualisation.qemu.options = [
    "-bios"
    "${pkgs.OVMF.fd}/FV/OVMF.fd"
  ];
}
