# Guest paths of extra mounts lose their trailing slashes ("/etc/nixos/", as
# users write keys, is /etc/nixos), and "/" stays "/".
let
  inherit (import ../../nixosModules/nixos-shell/lib.nix) withoutTrailingSlash;
  cases = {
    "/etc/nixos/" = "/etc/nixos";
    "/etc/nixos" = "/etc/nixos";
    "/a//" = "/a";
    "/" = "/";
  };
  wrong = builtins.filter (path: withoutTrailingSlash path != cases.${path}) (builtins.attrNames cases);
in
if wrong == [ ] then
  true
else
  throw "withoutTrailingSlash is wrong for ${builtins.toJSON wrong}"
