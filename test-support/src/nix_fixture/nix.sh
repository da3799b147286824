#!/bin/sh
# `nix` as the CLI under test finds it on PATH: the real one, with a line
# per call (its arguments, newlines as spaces) and one per exit in a log.
log=@log@
printf 'call %s\n' "$(printf '%s ' "$@" | tr '\n' ' ')" >> "$log"
@nix@ "$@"
rc=$?
echo "exit $rc" >> "$log"
exit $rc
