#!/bin/sh
# Test fixture standing in for NixOS' VM run script, bin/run-@name@-vm from
# config.system.build.vm (nixos/modules/virtualisation/qemu-vm.nix), as
# nixpkgs writes it in the @era@ era of its shared directories. It keeps that
# script's interface; only the kernel and initrd are Debian's kernel and the
# tests' busybox initramfs instead of a NixOS system.
set -e
@prelude@

# qemu-vm.nix: NIX_DISK_IMAGE defaults to virtualisation.diskImage
# (./<name>.qcow2), made absolute against the caller's cwd with readlink -f,
# and created with qemu-img when missing.
NIX_DISK_IMAGE=$(readlink -f "${NIX_DISK_IMAGE:-./@name@.qcow2}")
if ! test -e "$NIX_DISK_IMAGE"; then
    echo "Disk image do not exist, creating the virtualisation disk image..."
    qemu-img create -f qcow2 "$NIX_DISK_IMAGE" 64M >/dev/null
    echo "Virtualisation disk image created."
fi

# qemu-vm.nix: a private temporary directory unless both TMPDIR and
# USE_TMPDIR are set.
if [ -z "$TMPDIR" ] || [ -z "$USE_TMPDIR" ]; then
    TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi

# qemu-vm.nix: $TMPDIR/xchg is shared as tag xchg, SHARED_DIR (default the
# same directory) as tag shared; the guest mounts them at /tmp/xchg and
# /tmp/shared.
mkdir -p "$TMPDIR/xchg"
export TMPDIR

# qemu-vm.nix: QEMU starts in TMPDIR, so relative paths resolve there.
cd "$TMPDIR"
@start_shares@
# qemu-vm.nix: QEMU_NET_OPTS is appended to the user netdev's options,
# QEMU_KERNEL_PARAMS to the kernel command line, QEMU_OPTS and then "$@" to
# the command line; with virtualisation.qemu.enableSharedMemory the guest's
# memory is a shared memfd (which a virtiofs daemon needs), in any era. The
# kernel command line names the system's toplevel (`init=${toplevel}/init`),
# so a guest tells which build it booted from /proc/cmdline. The
# console options are nixos-shell's (virtio console on stdio, Ctrl-a
# prefix); graphics = false gives -nographic. TCG only: KVM may be missing
# or broken where the tests run.
@exec@qemu-system-x86_64 -accel tcg -cpu max \
    -name @vm_name@ \
    -m @memory@ -smp 1 \
    @shared_memory@ \
    -net nic,netdev=user.0,model=virtio -netdev user,id=user.0,"$QEMU_NET_OPTS" \
@share_options@
    -drive cache=writeback,file="$NIX_DISK_IMAGE",id=drive1,if=none,index=1,werror=report \
    -device virtio-blk-pci,bootindex=1,drive=drive1,serial=root \
    -nographic \
    -serial null -device virtio-serial \
    -chardev stdio,mux=on,id=char0,signal=off \
    -mon chardev=char0,mode=readline \
    -device virtconsole,chardev=char0,nr=0 \
    -kernel @kernel@ -initrd @initrd@ \
    -append "console=hvc0 quiet panic=-1 init=@toplevel@/init $QEMU_KERNEL_PARAMS" -no-reboot \
    $QEMU_OPTS "$@"
