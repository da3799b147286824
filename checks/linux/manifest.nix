# What `nixos-shell` builds, `config.system.build.nixos-shell`, holds the run
# script and the manifest of manifest/expected.json for manifest/module.nix
# (the cargo tests compare the same pair through a stand-in nixpkgs). The
# memory backend, which depends on the nixpkgs revision, is checked against
# the run script itself: the manifest names one exactly when the script
# passes one (nixpkgs since its shares moved to virtiofs), with the script's
# id and size, matched by its key=value pairs in any order. The shares are
# virtiofs on a Linux host, with the host package's virtiofsd (a store path,
# so checked apart, as are the system's toplevel and its registration), and
# 9p elsewhere.
{
  self,
  pkgs,
}:
let
  vm = self.lib.mkVm {
    inherit (pkgs.stdenv.hostPlatform) system;
    modules = [ ./manifest/module.nix ];
  };
  build = vm.config.system.build.nixos-shell;
  inherit (vm.config.virtualisation) memorySize;
  inherit (pkgs.stdenv.hostPlatform) isLinux;
  protocol = if isLinux then "virtiofs" else "9p";
  virtiofsd = if isLinux then ''"${pkgs.virtiofsd}/bin/virtiofsd"'' else "null";
in
pkgs.runCommand "nixos-shell-manifest" { nativeBuildInputs = [ pkgs.jq ]; } ''
  manifest=${build}/share/nixos-shell/manifest.json
  jq -S '.system = "${pkgs.stdenv.hostPlatform.system}" | .mounts.protocol = "${protocol}"' \
    ${./manifest/expected.json} > expected.json
  jq -S 'del(.memoryBackend, .mounts.virtiofsd, .switch.toplevel, .switch.registration)' "$manifest" > manifest.json
  diff -u expected.json manifest.json
  test "$(jq -r .switch.toplevel "$manifest")" = '${vm.config.system.build.toplevel}'
  # The closure qemu-vm.nix registers at boot, the toplevel's among it.
  grep -qx '${vm.config.system.build.toplevel}' "$(jq -r .switch.registration "$manifest")"
  test "$(jq -c .mounts.virtiofsd "$manifest")" = '${virtiofsd}'
  test -x ${build}/bin/run-dev-vm
  # The script's memfd backend, whatever the order of QEMU's key=value
  # pairs: the one with id mem0 names its size and is shared.
  backend=null
  for arg in $(grep -o 'memory-backend-memfd,[^[:space:]"'"'"']*' ${build}/bin/run-dev-vm); do
    case ",$arg," in *,id=mem0,*) ;; *) continue ;; esac
    case ",$arg," in *,size=${toString memorySize}M,*) ;; *) continue ;; esac
    case ",$arg," in *,share=on,*) ;; *) continue ;; esac
    backend='{"id":"mem0","size":${toString memorySize}}'
  done
  test "$(jq -c .memoryBackend "$manifest")" = "$(jq -c . <<<"$backend")"
  touch $out
''
