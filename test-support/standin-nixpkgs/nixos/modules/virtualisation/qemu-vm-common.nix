# What both eras of nixos/modules/virtualisation/qemu-vm.nix declare and
# build, as far as nixos-shell and its examples touch it (types and
# defaults as nixpkgs declares them).
#
# system.build.vm is the tests' run script: ../../../run-vm, with @name@,
# @memorySize@, @cores@ and @toplevel@ (the system, which NixOS's script
# boots as `init=${toplevel}/init`) replaced by this configuration's values, and
# @sharedMemory@ by qemu-vm.nix's options for a shared memory backend when
# `virtualisation.qemu.enableSharedMemory` (each era declares it) is on. As
# in NixOS, building it fails on a false assertion (NixOS's run script names
# the system's toplevel, which checks them).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.virtualisation;
  hostPkgs = cfg.host.pkgs;

  # qemu-vm.nix: `mkIf cfg.qemu.enableSharedMemory [ "-object
  # memory-backend-memfd,..." "-machine memory-backend=mem0" ]`.
  sharedMemory = lib.optionalString cfg.qemu.enableSharedMemory "-object memory-backend-memfd,id=mem0,size=${toString cfg.memorySize}M,share=on -machine memory-backend=mem0";

  failed = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  checked =
    drv:
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      lib.showWarnings config.warnings drv;
in
{
  options.virtualisation = {
    memorySize = mkOption {
      type = types.ints.positive;
      default = 1024;
      description = "The memory size of the virtual machine in MiB.";
    };
    cores = mkOption {
      type = types.ints.positive;
      default = 1;
      description = "The number of cores the guest may use.";
    };
    diskSize = mkOption {
      type = types.ints.positive;
      default = 1024;
      description = "The disk size in MiB.";
    };
    diskImage = mkOption {
      type = types.nullOr types.str;
      default = "./${config.system.name}.qcow2";
      defaultText = lib.literalExpression ''"./''${config.system.name}.qcow2"'';
      description = "Path to the root disk image; null for a tmpfs root.";
    };
    graphics = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to run QEMU with a graphics window, or in nographic mode.";
    };
    useBootLoader = mkOption {
      type = types.bool;
      default = false;
      description = "Use a boot loader to boot the system.";
    };
    # Declared as qemu-vm.nix declares them: the module reads them to tell
    # whether the guest's store is the host's (`--switch`, the host-nix
    # relay); the harness' run script shares the host's store only where a
    # test asks for it (RunScript::with_host_store).
    useNixStoreImage = mkOption {
      type = types.bool;
      default = false;
      description = "Build and use a disk image for the Nix store, instead of mounting the host's.";
    };
    mountHostNixStore = mkOption {
      type = types.bool;
      default = !cfg.useNixStoreImage && !cfg.useBootLoader;
      defaultText = lib.literalExpression "!cfg.useNixStoreImage && !cfg.useBootLoader";
      description = "Mount the host Nix store as a 9p mount.";
    };
    useEFIBoot = mkOption {
      type = types.bool;
      default = false;
      description = "Use UEFI to boot.";
    };
    # qemu-vm.nix registers this closure in the guest's Nix database at
    # boot (`regInfo = hostPkgs.closureInfo { rootPaths =
    # config.virtualisation.additionalPaths; }`), and sets it to the
    # system's toplevel.
    additionalPaths = mkOption {
      type = types.listOf types.path;
      default = [ ];
      description = "A list of paths whose closure should be made available to the VM.";
    };
    writableStoreUseTmpfs = mkOption {
      type = types.bool;
      default = true;
      description = "Use a tmpfs for the writable store.";
    };
    host.pkgs = mkOption {
      type = types.pkgs;
      default = pkgs;
      defaultText = lib.literalExpression "pkgs";
      description = "Package set for the host-specific packages of the VM runner.";
    };
    sharedDirectories = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.source = mkOption {
            type = types.str;
            description = "The path of the directory to share, can be a shell variable.";
          };
          options.target = mkOption {
            type = types.path;
            description = "The mount point of the directory inside the virtual machine.";
          };
        }
      );
      default = { };
      description = "Directories shared with the virtual machine (over 9p or virtiofs, by era); the name is the tag.";
    };
    forwardPorts = mkOption {
      type = types.listOf (
        types.submodule {
          options.from = mkOption {
            type = types.enum [
              "host"
              "guest"
            ];
            default = "host";
            description = "The direction of the forward.";
          };
          options.proto = mkOption {
            type = types.enum [
              "tcp"
              "udp"
            ];
            default = "tcp";
            description = "The protocol to forward.";
          };
          options.host.address = mkOption {
            type = types.str;
            default = "";
            description = "The IPv4 address of the host.";
          };
          options.host.port = mkOption {
            type = types.port;
            description = "The host port.";
          };
          options.guest.address = mkOption {
            type = types.str;
            default = "";
            description = "The IPv4 address on the guest VLAN.";
          };
          options.guest.port = mkOption {
            type = types.port;
            description = "The guest port.";
          };
        }
      );
      default = [ ];
      description = "Ports forwarded between host and guest (user networking).";
    };
    qemu = {
      options = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Options passed to QEMU.";
      };
      consoles = mkOption {
        type = types.listOf types.str;
        default =
          let
            consoles = [
              "ttyS0,115200n8"
              "tty0"
            ];
          in
          if cfg.graphics then consoles else lib.reverseList consoles;
        description = "The kernel's consoles; the last one is the primary.";
      };
      networkingOptions = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Networking options passed to QEMU.";
      };
    };
  };

  config.virtualisation.additionalPaths = [ config.system.build.toplevel ];

  config.system.build.vm = checked (
    hostPkgs.runCommand "nixos-vm" { preferLocalBuild = true; } ''
      mkdir -p $out/bin
      sed -e 's|@name@|${config.system.name}|g' \
          -e 's|@memorySize@|${toString cfg.memorySize}|g' \
          -e 's|@cores@|${toString cfg.cores}|g' \
          -e 's|@sharedMemory@|${sharedMemory}|g' \
          -e 's|@toplevel@|${config.system.build.toplevel}|g' \
          ${../../../run-vm} > $out/bin/run-${config.system.name}-vm
      chmod +x $out/bin/run-${config.system.name}-vm
    ''
  );
}
