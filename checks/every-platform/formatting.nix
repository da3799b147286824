# Every .nix file is formatted as `nix fmt` (nixfmt) leaves it.
{
  self,
  pkgs,
}:
pkgs.runCommand "nixos-shell-formatting" { nativeBuildInputs = [ pkgs.nixfmt ]; } ''
  cd ${self}
  find . -name '*.nix' -exec nixfmt --check {} +
  touch $out
''
