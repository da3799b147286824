# nixos/modules/programs/git.nix: its `config` type, merge included, as
# NixOS declares it.
{ config, lib, ... }:
let
  cfg = config.programs.git;
in
{
  options.programs.git = {
    enable = lib.mkEnableOption "git, a distributed version control system";
    config = lib.mkOption {
      type =
        with lib.types;
        let
          gitini = attrsOf (attrsOf anything);
        in
        either gitini (listOf gitini)
        // {
          merge =
            loc: defs:
            let
              config =
                builtins.foldl'
                  (
                    acc:
                    { value, ... }@x:
                    acc
                    // (
                      if builtins.isList value then
                        { ordered = acc.ordered ++ value; }
                      else
                        { unordered = acc.unordered ++ [ x ]; }
                    )
                  )
                  {
                    ordered = [ ];
                    unordered = [ ];
                  }
                  defs;
            in
            [ (gitini.merge loc config.unordered) ] ++ config.ordered;
        };
      default = [ ];
      description = "Configuration written to /etc/gitconfig.";
    };
  };

  config.environment.etc.gitconfig = lib.mkIf (cfg.enable && cfg.config != [ ]) {
    text = lib.concatMapStringsSep "\n" lib.generators.toGitINI cfg.config;
  };
}
