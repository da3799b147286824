#!/bin/sh
# `nix` as the CLI under test finds it on PATH: the real one, with a line
# per call (its arguments, newlines as spaces) and one per exit in a log.
# While the file @hold@ exists, a call waits before nix starts (saying so
# in @held@): nixos-shell waits for it as for a build under way, for as
# long as the test needs (NixFixture::hold_nix).
log=@log@
printf 'call %s\n' "$(printf '%s ' "$@" | tr '\n' ' ')" >> "$log"
if [ -e @hold@ ]; then
  : > @held@
  while [ -e @hold@ ]; do sleep 0.05; done
  rm -f @held@
fi
@nix@ "$@"
rc=$?
echo "exit $rc" >> "$log"
exit $rc
