//! `--dry-run`: prints the [`Plan`] a run would execute, shell-quoted: its
//! builds and the VM command its recipe composes (`compose`), with a
//! stand-in for what only the build decides (the result's path, the VM's
//! name, the module's shares and disk image) and for the session's
//! directory.

use std::fmt::Write;

use anyhow::Result;

use crate::host::compose::disk::DiskPlan;
use crate::host::compose::layout::Layout;
use crate::host::compose::{Found, Plan, VmRecipe};
use crate::host::gather::Gathered;
use crate::host::nix::result::BuildResult;
use crate::host::nix::Built;
use crate::host::read::Host;
use crate::schema::manifest::{CacheMode, Manifest, Mounts, Protocol, MANIFEST_VERSION};
use crate::sh;

/// The stand-in for the session's directory, which only a run creates.
pub fn layout() -> Layout {
    Layout::under("<private-temp-dir>")
}

/// The text of `plan`: its builds and, for a run, the VM command.
pub fn render(plan: &Plan) -> Result<String> {
    let mut text = builds(plan);
    if let Some(recipe) = &plan.vm {
        text.push_str(NOTE);
        let _ = writeln!(text, "{}", vm_line(plan, recipe)?);
    }
    Ok(text)
}

/// What the VM line leaves out.
const NOTE: &str = "\
# run (<result> and <name> come from the build; the module's shares (home, nix profile,
# extraMounts), its disk image and, with --memory, its memory backend are added after
# it, the shares before the --mount shares; over virtiofs, the build's default on a
# Linux host, each share is a virtiofsd and a vhost-user-fs device instead of -virtfs)
";

/// The VM command of `recipe` with stand-ins for the build's result, as
/// one shell line with its environment.
fn vm_line(plan: &Plan, recipe: &VmRecipe) -> Result<String> {
    let built = Built {
        result: BuildResult {
            path: "<result>".into(),
            run_script: "<result>/bin/run-<name>-vm".into(),
            manifest: unknown_manifest(recipe.host),
        },
        identity: plan.identity.clone(),
    };
    let manifest = &built.result.manifest;
    let gathered = Gathered::default();
    let disk_image = match recipe.disk(manifest) {
        DiskPlan::Ephemeral => Some(recipe.layout.ephemeral_image("<name>")),
        DiskPlan::Given(path) => Some(path),
        DiskPlan::LeaveAlone | DiskPlan::State => None,
    };
    let found = Found {
        gathered: &gathered,
        shares: recipe.shares(manifest, &gathered)?.export(),
        disk_image: disk_image.as_deref(),
        socket_dir: &recipe.layout.sockets(),
    };
    let command = recipe.compose(&built, found).command;
    let assignments = command
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", sh::quote(v)));
    let words: Vec<String> = assignments
        .chain(std::iter::once(sh::quote(command.program.as_str())))
        .chain(command.args.iter().map(|a| sh::quote(a)))
        .collect();
    Ok(words.join(" "))
}

/// The builds of `plan`, one shell line each.
fn builds(plan: &Plan) -> String {
    let mut text = String::new();
    if let crate::host::nix::Builds::Ready { result, .. } = &plan.builds {
        let _ = writeln!(text, "# no build: {result} is a build result");
    }
    for (n, step) in plan.builds.steps().iter().enumerate() {
        let _ = writeln!(
            text,
            "{}",
            if n == 0 {
                "# build"
            } else {
                "# only if the builds above report the configuration missing"
            }
        );
        let command = sh::join(step.build.argv());
        let _ = match step.build.cwd() {
            Some(dir) => writeln!(text, "(cd {} && {command})", sh::quote(dir.as_str())),
            None => writeln!(text, "{command}"),
        };
    }
    text
}

/// A manifest that says nothing the build would: no shares of the
/// module's, 9p for the `--mount` ones, no disk image, no memory backend.
fn unknown_manifest(host: &Host) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        name: "<name>".to_owned(),
        system: host.system.clone(),
        disk_image: None,
        inherit_path: true,
        memory_backend: None,
        memory_size: None,
        attach: false,
        state_version: None,
        switch: Default::default(),
        host_nix: false,
        host_store: None,
        mounts: Mounts {
            mount_home: false,
            mount_home_read_only: false,
            mount_nix_profile: false,
            protocol: Protocol::NineP,
            virtiofsd: None,
            cache: CacheMode::Loose,
            msize: 0,
            extra_mounts: Vec::new(),
        },
    }
}
