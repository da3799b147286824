#!/bin/sh
# Fixture run script: records what nixos-shell handed over.
rec="${NIXOS_SHELL_TEST_RECORD:?}"
: > "$rec"
printf 'cwd %s\n' "$PWD" >> "$rec"
printf 'script %s\n' "$0" >> "$rec"
for a in "$@"; do printf 'arg %s\n' "$a" >> "$rec"; done
env | LC_ALL=C sort | sed 's/^/env /' >> "$rec"
if [ -n "${NIXOS_SHELL_TEST_REGISTRY:-}" ]; then
  ls "$NIXOS_SHELL_TEST_REGISTRY" > "$rec.registry" 2>/dev/null || : > "$rec.registry"
fi
session=
for a in "$@"; do
  case "$a" in *mount_tag=nixos-shell*) session=${a#local,path=}; session=${session%%,*};; esac
done
if [ -n "$session" ]; then
  cp "$session/facts.json" "$rec.facts.json"
  rm -rf "$rec.terminfo"
  if [ -d "$session/terminfo" ]; then cp -R "$session/terminfo" "$rec.terminfo"; fi
  if [ -z "${NIXOS_SHELL_TEST_NO_RESULT:-}" ] && grep -q '"command": "' "$session/facts.json"; then
    printf '{"version":1,"exitCode":%s}' "${NIXOS_SHELL_TEST_GUEST_EXIT:-0}" > "$session/result.json"
  fi
fi
exit "${NIXOS_SHELL_TEST_EXIT:-0}"
