# The options of the nixos-shell module. Declarations only: the files beside
# this one implement them, one concern each.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types literalExpression;
  inherit (import ./lib.nix) mountTag;

  cfg = config.nixos-shell;

  # The host runs the guest's platform: host binaries (PATH, nix profile)
  # work in the guest.
  samePlatform =
    config.virtualisation.host.pkgs.stdenv.hostPlatform.system == pkgs.stdenv.hostPlatform.system;

  cacheType = types.enum [
    "none"
    "loose"
    "fscache"
    "mmap"
  ];

  extraMount = types.submodule (
    { name, ... }:
    {
      options = {
        target = mkOption {
          # A string too, so that an empty or relative one reaches the
          # module's own assertion (mounts.nix), which says what to do,
          # instead of failing the type check.
          type = types.either types.path types.str;
          example = "/srv/www";
          description = ''
            The directory on the host to share, where it is. Written as an
            absolute string, or as a path (`./src`): in a `vm.nix` a path
            is the directory beside the file; in a flake it is the flake's
            copy in the Nix store (shared read-only), so write a flake's
            directories as strings.
          '';
        };

        cache = mkOption {
          type = cacheType;
          default = cfg.mounts.cache;
          defaultText = literalExpression "config.nixos-shell.mounts.cache";
          description = "The cache mode of this share (see `nixos-shell.mounts.cache`).";
        };

        readOnly = mkOption {
          type = types.bool;
          default = false;
          description = "Whether to share the directory read-only (QEMU refuses writes too).";
        };

        tag = mkOption {
          type = types.str;
          internal = true;
          default = mountTag name;
          defaultText = lib.literalMD ''"a" followed by the MD5 of the guest path, cut to 31 bytes'';
          description = ''
            The 9p mount tag of this share, derived from the guest path: at
            most 31 bytes, never starting with a digit.
          '';
        };
      };
    }
  );
in
{
  options.nixos-shell = {
    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../../package.nix { };
      defaultText = literalExpression "pkgs.callPackage \"\${nixos-shell}/package.nix\" { }";
      description = ''
        The nixos-shell package whose guest role (`nixos-shell-guest`) runs
        in the VM before the console login. Built from the same source as
        this module by default.
      '';
    };

    inheritPath = mkOption {
      type = types.bool;
      default = samePlatform;
      defaultText = lib.literalMD "whether the host runs the guest's platform";
      description = ''
        Whether the login shell puts the host's `PATH` before its own, so the
        user's host tools are at hand in the VM. Only useful when host and
        guest run the same platform: the host's `PATH` names store paths
        built for the host.
      '';
    };

    hostNix.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether nix in the guest builds into the host's store: root's login,
        `--command` and `--attach` sessions get `NIX_REMOTE` pointing at a
        socket the guest role relays to a `nix-daemon --stdio` that
        nixos-shell starts on the host, as the user who ran it, for each
        connection. What they build lands in the host's store and shows in
        the guest's at once; what the host has is neither built nor copied.
        So the guest's root builds as that user on the host. Takes effect
        only where the guest's store is the host's
        (`virtualisation.mountHostNixStore` without
        `virtualisation.useNixStoreImage`) and the host has `nix-daemon`;
        otherwise, or with `nixos-shell --no-host-nix`, the guest's nix uses
        its own store. The guest's own nix-daemon serves its system services
        either way.
      '';
    };

    terminfo.fixFSCaseConflicts = mkOption {
      type = types.bool;
      default = config.virtualisation.host.pkgs.stdenv.hostPlatform.isDarwin;
      defaultText = lib.literalMD "whether the host (`virtualisation.host.pkgs`) runs darwin";
      description = ''
        Whether to merge the system profile's terminfo directories whose
        names differ only in case (`share/terminfo/x` and `X`). The guest
        reads the host's Nix store through a share; on a darwin host that
        store is usually on a case-insensitive file system, where only one
        of the two exists, and the entries of the other (`xterm-kitty`,
        `xterm-256color`, ...) are not found in the VM.
      '';
    };

    console.enable = mkOption {
      type = types.bool;
      default = !config.virtualisation.graphics;
      defaultText = literalExpression "!config.virtualisation.graphics";
      description = ''
        Whether the VM's console is the terminal nixos-shell runs in: a virtio
        console (`hvc0`) multiplexed with the QEMU monitor on QEMU's standard
        input and output. `Ctrl-a x` quits QEMU, `Ctrl-a c` switches between
        the console and the monitor, `Ctrl-C` goes to the guest.

        Turn it off when something else owns QEMU's standard input and
        output, such as the NixOS test driver.
      '';
    };

    console.device = mkOption {
      type = types.str;
      default = if cfg.console.enable then "/dev/hvc0" else "/dev/tty1";
      defaultText = literalExpression ''if config.nixos-shell.console.enable then "/dev/hvc0" else "/dev/tty1"'';
      description = ''
        The terminal the guest role sizes to the host's terminal and runs
        `nixos-shell --command` on: the virtio console with
        `console.enable`, else the first virtual terminal (the graphical
        window's console).
      '';
    };

    mounts = {
      mountHome = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether to share the user's home directory with the VM, mounted at
          the same path as on the host. The path is found when the VM starts
          (the build stays pure); `nixos-shell --no-home` turns it off for
          one run.
        '';
      };

      mountHomeReadOnly = mkOption {
        type = types.bool;
        default = false;
        description = "Whether to share the home directory read-only.";
      };

      mountNixProfile = mkOption {
        type = types.bool;
        default = samePlatform;
        defaultText = lib.literalMD "whether the host runs the guest's platform";
        description = ''
          Whether to share the user's Nix profile
          (`~/.local/state/nix/profiles`, else
          `/nix/var/nix/profiles/per-user/$USER/profile`) at the same path in
          the VM. Off by default when host and guest platforms differ: the
          profile's programs would not run in the guest.
        '';
      };

      cache = mkOption {
        type = cacheType;
        default = "loose";
        description = ''
          The default cache mode of every share: `none`, `loose`,
          `fscache` or `mmap` (see the kernel's
          `Documentation/filesystems/9p.rst`). `loose` is fast but does not
          notice changes made on the host while a file is cached; `none`
          always does. Over virtiofs (see `protocol`) `none` becomes
          virtiofsd's `--cache=never` and every other mode `--cache=auto`,
          which notices host changes after a short timeout.
        '';
      };

      protocol = mkOption {
        type = types.enum [
          "virtiofs"
          "9p"
        ];
        default = if config.virtualisation.host.pkgs.stdenv.hostPlatform.isLinux then "virtiofs" else "9p";
        defaultText = lib.literalMD ''`"virtiofs"` where the host (`virtualisation.host.pkgs`) runs Linux, else `"9p"`'';
        description = ''
          How the shares (home, Nix profile, `extraMounts`, `--mount`) reach
          the VM.

          `"virtiofs"`: nixos-shell starts one `virtiofsd` (from the host's
          package set) per share, and QEMU hands it the guest's memory
          (shared) through a `vhost-user-fs-pci` device. Several times faster
          than 9p for writes, metadata and many small files, and files keep
          the host user as their owner. `virtiofsd` runs on Linux only.

          `"9p"`: QEMU serves each share itself (`-virtfs`); works on every
          host QEMU runs on, darwin included, and needs no daemon.

          The session share that carries nixos-shell's own facts is 9p in
          both cases.
        '';
      };

      msize = mkOption {
        type = types.ints.positive;
        # Our own option, never `virtualisation.msize`: nixpkgs removed that
        # one when its shares moved to virtiofs, and reading or setting a
        # removed option fails the evaluation.
        default = 512000;
        description = ''
          The 9p `msize` (largest message, in bytes) the guest mounts
          nixos-shell's 9p shares with (see `protocol`). Larger is faster and costs guest memory;
          Linux's virtio transport caps it at 512000, whatever is asked.
        '';
      };

      extraMounts = mkOption {
        type = types.attrsOf (
          types.coercedTo (types.either types.path types.str) (target: { inherit target; }) extraMount
        );
        default = { };
        example = literalExpression ''
          {
            # Share /media at /media.
            "/media" = /media;
            # Share ./src at /var/www, uncached and read-only.
            "/var/www" = {
              target = ./src;
              cache = "none";
              readOnly = true;
            };
          }
        '';
        description = ''
          More host directories to share, keyed by the path where they appear
          in the VM. A value that is a path or a string is the host directory
          (`{ target = value; }`); an attribute set also sets the share's
          `cache` mode and `readOnly`.
        '';
      };
    };
  };
}
