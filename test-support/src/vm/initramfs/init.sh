#!/bin/sh
# The guest's first process, standing in for NixOS' stage 1 and 2: mount the
# API file systems, load the modules, wait for the console, mount the
# run script's own shares, configure the network, then hand PID 1 to busybox
# init (so `poweroff` works as on NixOS).
export PATH=/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
while read -r module; do insmod "/modules/$module" || echo "init: cannot load $module"; done </etc/modules.order

i=0
while [ ! -e /dev/hvc0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
exec </dev/hvc0 >/dev/hvc0 2>&1
# NixOS' initrd mounts qemu-vm.nix's shared directories xchg and shared at
# /tmp/xchg and /tmp/shared. One initramfs serves both eras of the run
# script, so it takes virtiofs where the script offers that tag and 9p
# otherwise (a virtiofs mount of a tag no device has fails at once).
mount_share() {
    mkdir -p "$2"
    mount -t virtiofs "$1" "$2" 2>/dev/null ||
        mount -t 9p -o trans=virtio,version=9p2000.L "$1" "$2" ||
        echo "init: cannot mount the share $1 at $2"
}
mount_share xchg /tmp/xchg
mount_share shared /tmp/shared
# qemu-vm.nix shares the host's store (tag nix-store, cache=loose) at
# /nix/.ro-store and, without writableStore, binds it at /nix/store. Only
# where the harness' script offers the tag (tests of --switch).
# A 9p mount of a tag no device has fails at once.
mkdir -p /nix/.ro-store
if mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,ro nix-store /nix/.ro-store 2>/dev/null; then
    mkdir -p /nix/store && mount -o bind /nix/.ro-store /nix/store
else
    rmdir /nix/.ro-store /nix 2>/dev/null
fi

hostname guest
ip link set lo up
ip link set eth0 up && ip addr add @guest_ip@ dev eth0 && ip route add default via @gateway@
exec /bin/init
