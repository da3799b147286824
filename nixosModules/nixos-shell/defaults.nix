# Defaults for a throwaway development VM. All at priority 900, like the
# original nixos-shell: above NixOS's own defaults, below anything the user
# writes in their module.
{
  config,
  lib,
  ...
}:
let
  mkVMDefault = lib.mkOverride (import ./lib.nix).defaultPriority;
in
{
  config = lib.mkMerge [
    {
      virtualisation.memorySize = mkVMDefault 500;

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
