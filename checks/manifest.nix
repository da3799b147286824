# What `nixos-shell` builds, `config.system.build.nixos-shell`, holds the run
# script and the manifest of manifest/expected.json for manifest/module.nix
# (the cargo tests compare the same pair through a stand-in nixpkgs). The
# memory backend, which depends on the nixpkgs revision, is checked against
# the run script itself: the manifest names one exactly when the script
# passes one (nixpkgs since its shares moved to virtiofs), with the script's
# id and size.
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
in
pkgs.runCommand "nixos-shell-manifest" { nativeBuildInputs = [ pkgs.jq ]; } ''
  manifest=${build}/share/nixos-shell/manifest.json
  jq -S '.system = "${pkgs.stdenv.hostPlatform.system}"' ${./manifest/expected.json} > expected.json
  jq -S 'del(.memoryBackend)' "$manifest" > manifest.json
  diff -u expected.json manifest.json
  test -x ${build}/bin/run-dev-vm
  if grep -q 'memory-backend-memfd,id=mem0,size=${toString memorySize}M' ${build}/bin/run-dev-vm; then
    backend='{"id":"mem0","size":${toString memorySize}}'
  else
    backend=null
  fi
  test "$(jq -c .memoryBackend "$manifest")" = "$(jq -c . <<<"$backend")"
  touch $out
''
