# Fixture nixos-shell module: system.build.nixos-shell = run script + manifest.
{
  config,
  pkgs,
  ...
}:
let
  cfg = config.fixture;
  name = config.system.name;
  manifest = builtins.toFile "manifest.json" (
    builtins.toJSON {
      version = 2;
      inherit name;
      system = pkgs.system;
      memoryBackend = cfg.memoryBackend;
      attach = cfg.attach;
      diskImage = cfg.diskImage;
      inheritPath = cfg.inheritPath;
      mounts = {
        mountHome = cfg.mountHome;
        mountHomeReadOnly = false;
        mountNixProfile = cfg.mountNixProfile;
        cache = cfg.cache;
        msize = cfg.msize;
        extraMounts = cfg.extraMounts;
      };
    }
  );
in
{
  system.build.nixos-shell = builtins.derivation {
    name = "nixos-shell-${name}";
    system = pkgs.system;
    builder = "/bin/sh";
    args = [
      "-c"
      ''
        PATH=/usr/bin:/bin
        ${cfg.preBuild}
        ${if cfg.fail then "echo 'fixture build failed on purpose' >&2; exit 3" else ""}
        mkdir -p $out/bin $out/share/nixos-shell
        cp ${manifest} $out/share/nixos-shell/manifest.json
        ${
          if cfg.runScript then
            ''
              cp ${../run-vm} $out/bin/run-${name}-vm
              chmod +x $out/bin/run-${name}-vm
            ''
          else
            ""
        }
      ''
    ];
  };
}
