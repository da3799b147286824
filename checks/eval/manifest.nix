# The manifest the module writes has exactly the fields, names and JSON
# types that src/schema/manifest.rs reads (`Manifest`, `Mounts`,
# `ExtraMount`; serde camelCase), for a stub of the module's settings.
let
  inherit (import ../../nixosModules/nixos-shell/lib.nix) mkManifest mountTag;

  manifest = mkManifest {
    name = "dev";
    system = "x86_64-linux";
    diskImage = null;
    inheritPath = false;
    msize = 16384;
    memoryBackend = {
      id = "mem0";
      size = 500;
    };
    mounts = {
      mountHome = true;
      mountHomeReadOnly = false;
      mountNixProfile = true;
      cache = "loose";
      extraMounts = {
        # Attribute order is not guest-path order: the manifest sorts.
        "/var/www" = {
          target = /srv/www;
          cache = "none";
          readOnly = true;
          tag = mountTag "/var/www";
        };
        "/var" = {
          target = "/srv/var";
          cache = "mmap";
          readOnly = false;
          tag = mountTag "/var";
        };
      };
    };
  };

  expected = {
    version = 2;
    name = "dev";
    system = "x86_64-linux";
    diskImage = null;
    inheritPath = false;
    memoryBackend = {
      id = "mem0";
      size = 500;
    };
    mounts = {
      mountHome = true;
      mountHomeReadOnly = false;
      mountNixProfile = true;
      cache = "loose";
      msize = 16384;
      extraMounts = [
        {
          guestPath = "/var";
          target = "/srv/var";
          tag = mountTag "/var";
          cache = "mmap";
          readOnly = false;
        }
        {
          guestPath = "/var/www";
          # A path stays the host's path: never copied into the store.
          target = "/srv/www";
          tag = "ae4d04fcf8f1486030e6781b8ac0087";
          cache = "none";
          readOnly = true;
        }
      ];
    };
  };

  # Field names as serde spells them for the Rust structs.
  fields = {
    manifest = [
      "diskImage"
      "inheritPath"
      "memoryBackend"
      "mounts"
      "name"
      "system"
      "version"
    ];
    mounts = [
      "cache"
      "extraMounts"
      "mountHome"
      "mountHomeReadOnly"
      "mountNixProfile"
      "msize"
    ];
    extraMount = [
      "cache"
      "guestPath"
      "readOnly"
      "tag"
      "target"
    ];
  };

  expect =
    what: got: want:
    if got == want then
      true
    else
      throw "manifest ${what}: expected ${builtins.toJSON want}, got ${builtins.toJSON got}";
  cacheModes = [
    "none"
    "loose"
    "fscache"
    "mmap"
  ];
  knownCache = mount: builtins.elem mount.cache cacheModes;
  extraMountFields = mount: expect "extraMounts fields" (builtins.attrNames mount) fields.extraMount;
in
builtins.all (x: x) (
  [
    (expect "fields" (builtins.attrNames manifest) fields.manifest)
    (expect "mounts fields" (builtins.attrNames manifest.mounts) fields.mounts)
    (expect "JSON" (builtins.toJSON manifest) (builtins.toJSON expected))
    (expect "cache modes" (builtins.all knownCache manifest.mounts.extraMounts) true)
  ]
  ++ map extraMountFields manifest.mounts.extraMounts
)
