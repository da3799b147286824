//! `--dry-run`: what a run would execute, printed shell-quoted: the plan's
//! builds and the VM command from the same composition a run uses
//! (`vm::compose`), with a stand-in for what only the build decides (the
//! result's path, the VM's name, the module's shares and disk image).

use anyhow::Result;

use crate::host::build::result::BuildResult;
use crate::host::build::{Built, Plan, Request};
use crate::host::read::Host;
use crate::host::settings::Settings;
use crate::host::shares::Shares;
use crate::host::vm::disk::{self, DiskPlan};
use crate::host::vm::facts::Gathered;
use crate::host::vm::session::Layout;
use crate::host::vm::{self, Inputs};
use crate::schema::manifest::{CacheMode, Manifest, Mounts, Protocol, MANIFEST_VERSION};
use crate::sh;

/// Prints the builds and, unless `build_only`, the VM command.
pub fn print(request: &Request, settings: &Settings, host: &Host, build_only: bool) -> Result<u8> {
    let session = Layout::under("<private-temp-dir>");
    let vm_link = (!build_only).then(|| session.out_link());
    let plan = request.plan(settings.out_link.as_deref().or(vm_link.as_deref()))?;
    print_builds(&plan);
    if build_only {
        return Ok(0);
    }
    let built = Built {
        result: BuildResult {
            run_script: "<result>/bin/run-<name>-vm".into(),
            manifest: unknown_manifest(host),
        },
        identity: request.identity(),
    };
    let shares = Shares::collect(
        &built.result.manifest,
        &host.home,
        None,
        &settings.mounts,
        settings.no_home,
    )?;
    let disk_image = match disk::plan(&host.env, &settings.disk, None) {
        DiskPlan::Ephemeral => Some(session.ephemeral_image("<name>")),
        DiskPlan::Given(path) => Some(path),
        DiskPlan::LeaveAlone | DiskPlan::State => None,
    };
    let ports = vm::needed_ports(host, settings, &built.result.manifest);
    let vm = vm::compose(Inputs {
        host,
        settings,
        built: &built,
        session: &session,
        shares: shares.export(),
        gathered: &Gathered::default(),
        ports: &ports,
        socket_dir: &session.sockets(),
        disk_image: disk_image.as_deref(),
    });
    println!(
        "# run (<result> and <name> come from the build; the module's shares (home, nix profile,"
    );
    println!(
        "# extraMounts), its disk image and, with --memory, its memory backend are added after"
    );
    println!("# it, the shares before the --mount shares; over virtiofs, the build's default on a");
    println!(
        "# Linux host, each share is a virtiofsd and a vhost-user-fs device instead of -virtfs)"
    );
    let command = &vm.command;
    let assignments = command
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", sh::quote(v)));
    let words: Vec<String> = assignments
        .chain(std::iter::once(sh::quote(command.program.as_str())))
        .chain(command.args.iter().map(|a| sh::quote(a)))
        .collect();
    println!("{}", words.join(" "));
    Ok(0)
}

/// The builds of `plan`, one shell line each.
fn print_builds(plan: &Plan) {
    if let Plan::Ready { result, .. } = plan {
        println!("# no build: {result} is a build result");
    }
    for (n, step) in plan.steps().iter().enumerate() {
        if n == 0 {
            println!("# build");
        } else {
            println!("# only if the builds above report the configuration missing");
        }
        let command = sh::join(step.build.argv());
        match step.build.cwd() {
            Some(dir) => println!("(cd {} && {command})", sh::quote(dir.as_str())),
            None => println!("{command}"),
        }
    }
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
