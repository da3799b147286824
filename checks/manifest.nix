# What `nixos-shell` builds, `config.system.build.nixos-shell`, holds the run
# script and a manifest equal to what src/schema/manifest.rs reads. The
# memory backend is checked against the run script itself: the manifest
# names one exactly when the script passes one (nixpkgs since its shares
# moved to virtiofs), with the script's id and size.
{
  self,
  pkgs,
}:
let
  inherit (pkgs.stdenv.hostPlatform) system;

  vm = self.lib.mkVm {
    inherit system;
    modules = [
      {
        nixos-shell.mounts = {
          mountHomeReadOnly = true;
          cache = "mmap";
          extraMounts = {
            "/srv/data" = "/data";
            "/var/www" = {
              target = "/srv/www";
              cache = "none";
              readOnly = true;
            };
          };
        };
      }
    ];
  };
  build = vm.config.system.build.nixos-shell;

  expected = {
    version = 2;
    name = "nixos";
    inherit system;
    diskImage = "./nixos.qcow2";
    inheritPath = true;
    mounts = {
      mountHome = true;
      mountHomeReadOnly = true;
      mountNixProfile = true;
      cache = "mmap";
      msize = 512000;
      extraMounts = [
        {
          guestPath = "/srv/data";
          target = "/data";
          tag = "a" + builtins.substring 0 30 (builtins.hashString "md5" "/srv/data");
          cache = "mmap";
          readOnly = false;
        }
        {
          guestPath = "/var/www";
          target = "/srv/www";
          tag = "ae4d04fcf8f1486030e6781b8ac0087";
          cache = "none";
          readOnly = true;
        }
      ];
    };
  };
in
pkgs.runCommand "nixos-shell-manifest"
  {
    nativeBuildInputs = [ pkgs.jq ];
    expected = builtins.toJSON expected;
    passAsFile = [ "expected" ];
  }
  ''
    manifest=${build}/share/nixos-shell/manifest.json
    jq -S . "$expectedPath" > expected.json
    jq -S 'del(.memoryBackend)' "$manifest" > manifest.json
    diff -u expected.json manifest.json
    test -x ${build}/bin/run-nixos-vm
    if grep -q 'memory-backend-memfd,id=mem0,size=${toString vm.config.virtualisation.memorySize}M' ${build}/bin/run-nixos-vm; then
      backend='{"id":"mem0","size":${toString vm.config.virtualisation.memorySize}}'
    else
      backend=null
    fi
    test "$(jq -c .memoryBackend "$manifest")" = "$(jq -c . <<<"$backend")"
    touch $out
  ''
