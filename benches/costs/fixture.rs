//! The fixture flakes of the figures: a configuration exported the way
//! `lib.mkVm` exports one (`nixosConfigurations.vm.config.system.build
//! .nixos-shell`: a run script and a manifest), optionally with an
//! evaluation load.
//!
//! The load is pure evaluation of the kind NixOS's module system does: it
//! builds [`LOAD_SIZE`] small attribute sets from a `genList`, indexes them
//! with `listToAttrs`, extends each with `//` in a `mapAttrs`, and folds over
//! the result. Its sum is an attribute of the derivation, so computing the
//! `drvPath` forces all of it. Nothing is built but a directory holding the
//! run script and the manifest, written with `/bin/sh` (the store is used
//! without a sandbox, as Debian's nix is).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// The number of attribute sets of the evaluation load: about 2 s of
/// evaluation on one core of the machine the figures were first taken on
/// (AMD EPYC, nix 2.8).
pub const LOAD_SIZE: u32 = 420_000;

/// A fixture flake's contents.
pub struct Fixture<'a> {
    /// Attribute sets of the evaluation load; 0 for none.
    pub load_size: u32,
    /// The text of `bin/run-vm-vm`.
    pub run_script: &'a str,
    /// The manifest's `mounts.mountHome` and `mounts.mountNixProfile`, as
    /// the module's defaults have them.
    pub mount_home: bool,
}

/// A run script for fixtures that are only built, never started.
pub const NOT_BOOTABLE: &str =
    "#!/bin/sh\necho 'this benchmark fixture is only built, never started' >&2\nexit 1\n";

/// Writes the flake (`flake.nix`, `run-vm-vm`) into `dir`, created when
/// missing.
pub fn write_flake(dir: &Path, fixture: &Fixture) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let flake = format!(
        r#"{{
  description = "nixos-shell benchmark fixture: a configuration shaped like lib.mkVm's, with an evaluation load";
  outputs = {{ self }}:
    let
      n = {load_size};
      option = i: {{
        name = "opt${{toString i}}";
        value = {{ inherit i; enable = i / 2 * 2 == i; deps = builtins.genList (j: i + j) 8; }};
      }};
      options = builtins.listToAttrs (builtins.genList option n);
      merged = builtins.mapAttrs (k: v: v // {{ priority = builtins.foldl' (a: b: a + b) 0 v.deps; }}) options;
      load = builtins.foldl' (acc: k: acc + merged.${{k}}.priority) 0 (builtins.attrNames merged);
      manifest = builtins.toJSON {{
        version = 1;
        name = "vm";
        system = "x86_64-linux";
        diskImage = "./vm.qcow2";
        inheritPath = true;
        mounts = {{
          mountHome = {mount_home};
          mountHomeReadOnly = false;
          mountNixProfile = {mount_home};
          cache = "loose";
          msize = 104857600;
          extraMounts = [ ];
        }};
      }};
    in
    {{
      nixosConfigurations.vm.config.system.build.nixos-shell = derivation {{
        name = "nixos-shell-bench-vm";
        system = "x86_64-linux";
        builder = "/bin/sh";
        runScript = ./run-vm-vm;
        inherit manifest;
        evalLoad = toString load;
        args = [ "-c" ''
          /bin/mkdir -p $out/bin $out/share/nixos-shell
          /bin/cp $runScript $out/bin/run-vm-vm
          /bin/chmod 755 $out/bin/run-vm-vm
          printf '%s' "$manifest" > $out/share/nixos-shell/manifest.json
        '' ];
      }};
    }};
}}
"#,
        load_size = fixture.load_size,
        mount_home = fixture.mount_home,
    );
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("flake.nix", &flake)?;
    write("run-vm-vm", fixture.run_script)
}
