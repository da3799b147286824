# Fixture <nixpkgs/nixos>: modules are paths, functions or attrsets with
# `imports`; their results are merged recursively, later ones winning.
{
  configuration ? { },
  modules ? [ ],
  system ? builtins.currentSystem,
}:
let
  pkgs = {
    path = ../.;
    inherit system;
  };
  recursiveUpdate =
    a: b:
    a
    // builtins.mapAttrs (
      n: v:
      if builtins.isAttrs v && !(v ? outPath) && a ? ${n} && builtins.isAttrs a.${n} then
        recursiveUpdate a.${n} v
      else
        v
    ) b;
  defaults = {
    system.name = "nixos";
    fixture = {
      mountHome = true;
      mountNixProfile = true;
      diskImage = "./${config.system.name}.qcow2";
      extraMounts = [ ];
      inheritPath = true;
      runScript = true;
      fail = false;
      preBuild = "";
      cache = "loose";
      msize = 16384;
      memoryBackend = null;
      attach = false;
    };
  };
  load =
    m:
    let
      f = if builtins.isPath m || builtins.isString m then import m else m;
    in
    if builtins.isFunction f then
      f {
        inherit config pkgs;
        lib = { };
      }
    else
      f;
  collect =
    ms:
    builtins.concatLists (
      map (
        m:
        let
          v = load m;
        in
        [ (builtins.removeAttrs v [ "imports" ]) ] ++ collect (v.imports or [ ])
      ) ms
    );
  config = builtins.foldl' recursiveUpdate defaults (collect ([ configuration ] ++ modules));
in
{
  inherit config pkgs;
  extendModules =
    args:
    import ./. {
      inherit configuration system;
      modules = modules ++ (args.modules or [ ]);
    };
}
