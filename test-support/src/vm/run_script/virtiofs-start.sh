
# qemu-vm.nix (virtiofs era): each shared directory is served by its own
# virtiofsd, which the script starts, and reached by QEMU through a
# vhost-user-fs device on the daemon's socket. virtiofsd maps the guest's
# RAM, hence the shared memory backend among QEMU's options.
virtiofsd=@virtiofsd@

# A socket path must fit sun_path (108 bytes): a long TMPDIR gets its sockets
# in a short private directory instead.
sockets=$TMPDIR
if [ ${#sockets} -gt 90 ]; then
    sockets=$(mktemp -d /tmp/nix-vm.XXXXXXXXXX)
fi

# A virtiofsd ends when QEMU disconnects from it, but one QEMU never reached
# (QEMU refused its options, or the script was interrupted first) waits
# forever: QEMU runs as a child rather than exec'd, and the daemons left
# when the script ends are stopped, keeping QEMU's exit status.
daemons=
stop_virtiofsd() {
    for pid in $daemons; do kill "$pid" 2>/dev/null || true; done
    for pid in $daemons; do wait "$pid" 2>/dev/null || true; done
    rm -f "$sockets"/xchg.sock "$sockets"/xchg.sock.pid \
        "$sockets"/shared.sock "$sockets"/shared.sock.pid
    if [ "$sockets" != "$TMPDIR" ]; then rmdir "$sockets" || true; fi
}
trap 'status=$?; stop_virtiofsd; exit $status' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# start_virtiofsd TAG DIR: serves DIR on $sockets/TAG.sock and waits for the
# socket, since QEMU fails on a socket that is not there yet. Errors only:
# at its default level virtiofsd writes a few lines on every start onto the
# console the user is about to get.
start_virtiofsd() {
    "$virtiofsd" --socket-path="$sockets/$1.sock" --shared-dir="$2" \
        --sandbox=none --cache=auto --log-level=error &
    pid=$!
    daemons="$daemons $pid"
    i=0
    while [ ! -S "$sockets/$1.sock" ]; do
        if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 100 ]; then
            echo "virtiofsd did not start serving $2 on $sockets/$1.sock" >&2
            exit 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
}
start_virtiofsd shared "${SHARED_DIR:-$TMPDIR/xchg}"
start_virtiofsd xchg "$TMPDIR/xchg"
