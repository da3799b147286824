#!/bin/sh
# Stands in for qemu-system-x86_64 on the run script's PATH: records its
# arguments, each vhost-user socket that exists when QEMU starts, and the
# virtiofsd processes running then; then fails as a QEMU that refused its
# options does, without ever connecting to a socket.
record=${STAND_IN_QEMU_RECORD:?}
for arg in "$@"; do
    printf 'arg %s\n' "$arg" >>"$record"
    case "$arg" in
    socket,*path=*)
        socket=${arg##*path=}
        if [ -S "$socket" ]; then printf 'socket %s\n' "$socket" >>"$record"; fi
        ;;
    esac
done
for cmdline in /proc/[0-9]*/cmdline; do
    { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -e '^[^ ]*virtiofsd ' | sed 's/^/daemon /' >>"$record"
done
exit 3
