# Defaults for a throwaway development VM. All at priority 900, like the
# original nixos-shell: above NixOS's own defaults, below anything the user
# writes in their module.
{
  config,
  lib,
  options,
  ...
}:
let
  mkVMDefault = lib.mkOverride (import ./lib.nix).defaultPriority;
in
{
  config = lib.mkMerge [
    {
      virtualisation.memorySize = mkVMDefault 500;
    }

    # The guest's memory shared with the host's virtiofsd: the run script's
    # own store share needs it once nixpkgs shares the store over virtiofs
    # (NixOS/nixpkgs#552774), and nothing asked for it until #563324 made it
    # qemu-vm.nix's default; nixos-shell's own virtiofs shares need it too.
    # qemu-vm.nix declares the option since the test driver's ssh backdoor
    # (`virtualisation.qemu.enableSharedMemory`, a mkEnableOption; the
    # driver sets it with mkDefault, nixos/lib/testing/driver.nix) and adds
    # `-object memory-backend-memfd,id=mem0,...,share=on -machine
    # memory-backend=mem0` with it. A memfd is Linux's: on a darwin host the
    # shares are 9p and nothing needs it.
    (lib.optionalAttrs (options ? virtualisation.qemu.enableSharedMemory) {
      virtualisation.qemu.enableSharedMemory = lib.mkIf config.virtualisation.host.pkgs.stdenv.hostPlatform.isLinux (
        mkVMDefault true
      );
    })

    {

      # A development VM: every port the user opens is reachable.
      networking.firewall.enable = mkVMDefault false;

      # The shared home belongs to the host user's uid; let git (and Nix's
      # git fetcher) use repositories there anyway.
      programs.git.config.safe.directory = mkVMDefault "*";

      # A VM's disk image is easily thrown away (`nixos-shell --ephemeral`
      # keeps none): start at this NixOS release unless the user says
      # otherwise, instead of warning on every build.
      system.stateVersion = lib.mkOverride 1100 lib.trivial.release;
    }

    # NixOS writes /etc/gitconfig only with programs.git.enable; write the
    # setting above without installing git.
    {
      environment.etc.gitconfig = lib.mkIf (!config.programs.git.enable) {
        text = lib.concatMapStringsSep "\n" lib.generators.toGitINI config.programs.git.config;
      };
    }
  ];
}
