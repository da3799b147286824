
# qemu-vm.nix (9p era): QEMU serves the shared directories itself (-virtfs).
