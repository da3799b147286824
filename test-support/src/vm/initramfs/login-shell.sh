#!/bin/sh
# The console login: root's login shell, then power off (the VM ends with
# the shell, as nixos-shell's does).
/bin/sh -l
exec /bin/poweroff -f
