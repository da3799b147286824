# The 9p mount tags of extra mounts: "a" + md5 of the guest path, 31 bytes,
# never starting with a digit, the same as the original nixos-shell's.
let
  inherit (import ../../nixosModules/nixos-shell/lib.nix) mountTag;
  expect =
    what: got: want:
    if got == want then
      true
    else
      throw "${what}: expected ${builtins.toJSON want}, got ${builtins.toJSON got}";
  paths = [
    "/var/www"
    "/mnt/data"
    "/"
    "/a/very/long/guest/path/that/is/much/longer/than/thirty-one/bytes"
  ];
  firstByte = builtins.substring 0 1;
  tagLength = path: builtins.stringLength (mountTag path);
  distinct = builtins.attrNames (
    builtins.listToAttrs (
      map (path: {
        name = mountTag path;
        value = path;
      }) paths
    )
  );
in
builtins.all (x: x) (
  [
    # md5sum: /var/www e4d04fcf8f1486030e6781b8ac00870c,
    # /mnt/data ecabd55f704fe0f0dcc41be6e7e7ab83.
    (expect "tag of /var/www" (mountTag "/var/www") "ae4d04fcf8f1486030e6781b8ac0087")
    (expect "tag of /mnt/data" (mountTag "/mnt/data") "aecabd55f704fe0f0dcc41be6e7e7ab")
  ]
  ++ map (path: expect "length of the tag of ${path}" (tagLength path) 31) paths
  ++ map (path: expect "first byte of the tag of ${path}" (firstByte (mountTag path)) "a") paths
  ++ [ (expect "one tag per path" (builtins.length distinct) (builtins.length paths)) ]
)
