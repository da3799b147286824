# nixos-shell.terminfo.fixFSCaseConflicts: terminfo in the system profile on
# a case-insensitive host store (a darwin host's).
#
# The guest reads its store through a share of the host's. ncurses keeps
# entries under their first letter, and share/terminfo has both `x/` (xterm,
# xterm-kitty, ...) and `X/` (a few others). A case-insensitive file system
# holds only one of them: Nix stores the second (in the order of a NAR, which
# sorts `X` before `x`) under a "~nix~case~hack~1" name, so the guest finds
# `X/` for both and none of the entries of `x/`. The fix puts every entry of
# a lower-case directory into its upper-case twin (copies: the files, not
# links that would lead back into a package's lower-case one), in the system
# profile's share/terminfo (built by buildEnv, whose environment.extraSetup
# runs in the builder with $out the profile:
# nixos/modules/config/system-path.nix).
{ config, lib, ... }:
{
  environment.extraSetup = lib.mkIf config.nixos-shell.terminfo.fixFSCaseConflicts ''
    # buildEnv links a directory that only one package provides as a whole;
    # this turns such a link into a directory of links to its entries, so
    # that entries can be added to it.
    nixosShellUnlinkDir() {
      if [ -L "$1" ] && [ -d "$1" ]; then
        local from entry
        from=$(readlink -f "$1")
        rm "$1"
        mkdir "$1"
        for entry in "$from"/* "$from"/.[!.]*; do
          if [ -e "$entry" ] || [ -L "$entry" ]; then
            ln -s "$entry" "$1/"
          fi
        done
      fi
    }
    if [ -d "$out/share/terminfo" ]; then
      nixosShellUnlinkDir "$out/share"
      nixosShellUnlinkDir "$out/share/terminfo"
      for lower in "$out"/share/terminfo/[a-z]; do
        upper="$out/share/terminfo/$(basename "$lower" | tr a-z A-Z)"
        if [ -d "$lower" ] && [ -d "$upper" ] && ! [ "$lower" -ef "$upper" ]; then
          nixosShellUnlinkDir "$upper"
          for entry in "$lower"/*; do
            name=$(basename "$entry")
            # A copy, not a link: a link into the package's `x/` would be
            # looked up on the host as its `X/`.
            if ! [ -e "$upper/$name" ]; then
              cp -L "$entry" "$upper/$name"
            fi
          done
        fi
      done
    fi
  '';
}
