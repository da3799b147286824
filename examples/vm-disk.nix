# A physical disk in the VM. The user running nixos-shell must be able to
# read and write the device (e.g. be in the `disk` group). It shows up in
# the VM as the next virtio disk, /dev/vdb. Without a rebuild,
#   nixos-shell -- -drive file=/dev/sdc,format=raw,if=virtio
# does the same for one run.
{
  virtualisation.qemu.options = [ "-drive file=/dev/sdc,format=raw,if=virtio" ];
}
