//! The evaluation load of the warm-start fixture: about two seconds of pure
//! evaluation of the kind NixOS's module system does.
//!
//! It builds [`LOAD_SIZE`] small attribute sets from a `genList`, indexes
//! them with `listToAttrs`, extends each with `//` in a `mapAttrs`, and folds
//! over the result. The module it goes into makes the manifest's
//! `diskImage` depend on the sum, so computing the build's `drvPath` forces
//! all of it, and only a cached `drvPath` can skip it.

/// The number of attribute sets: about 2 s of evaluation on one core of
/// the machine the figures were first taken on (AMD EPYC, nix 2.8).
pub const LOAD_SIZE: u32 = 420_000;

/// A NixOS-style module (an attribute set) carrying the load.
pub fn module() -> String {
    format!(
        r#"(let
          n = {LOAD_SIZE};
          option = i: {{
            name = "opt${{toString i}}";
            value = {{ inherit i; enable = i / 2 * 2 == i; deps = builtins.genList (j: i + j) 8; }};
          }};
          options = builtins.listToAttrs (builtins.genList option n);
          merged = builtins.mapAttrs (k: v: v // {{ priority = builtins.foldl' (a: b: a + b) 0 v.deps; }}) options;
          load = builtins.foldl' (acc: k: acc + merged.${{k}}.priority) 0 (builtins.attrNames merged);
        in {{ fixture.diskImage = builtins.seq load "./vm.qcow2"; }})"#
    )
}
