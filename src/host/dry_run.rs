//! `--dry-run`: what a run would execute, printed shell-quoted, from the
//! same plan and composition a run uses; only what the build decides (the
//! result's path, the VM's name, the module's shares and disk image) is
//! left as a placeholder.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};

use super::build::Plan;
use super::context::Host;
use super::disk::{self, DiskPlan};
use super::launch::{self, Launch};
use super::ports;
use super::settings::Settings;
use crate::shell as quote;

/// Prints the builds of `plan` and, unless `build_only`, the VM command.
pub fn print(
    plan: &Plan,
    settings: &Settings,
    host: &Host,
    session: &Utf8Path,
    build_only: bool,
) -> Result<u8> {
    if let Plan::Ready { result, .. } = plan {
        println!("# no build: {result} is a build result");
    }
    for (n, step) in plan.steps().iter().enumerate() {
        if n == 0 {
            println!("# build");
        } else {
            println!("# only if the builds above report the configuration missing");
        }
        let command = quote::join(step.build.argv());
        match step.build.cwd() {
            Some(dir) => println!("(cd {} && {command})", quote::quote(dir.as_str())),
            None => println!("{command}"),
        }
    }
    if build_only {
        return Ok(0);
    }
    let flag_shares = launch::flag_shares(&settings.mounts);
    let disk_image = match disk::plan(&host.env, settings.ephemeral, settings.disk_path(), None) {
        DiskPlan::Ephemeral => Some(session.join("<name>.qcow2")),
        DiskPlan::Given(path) => Some(path),
        DiskPlan::LeaveAlone | DiskPlan::State => None,
    };
    let command_io = settings.command.as_ref().map(|_| host.command_io());
    let ports = ports::sockets(
        &ports::needed(command_io, host.terminal.is_some()),
        &session.join("sockets"),
    );
    let command = launch::compose(&Launch {
        run_script: &Utf8PathBuf::from("<result>/bin/run-<name>-vm"),
        settings,
        session_share: &session.join("share"),
        private_tmp: &session.join("tmp"),
        module_shares: &[],
        flag_shares: &flag_shares,
        disk_image: disk_image.as_deref(),
        memory_backend: None,
        memory_size: None,
        daemons: &[],
        ports: &ports,
        env: &host.env,
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
    let assignments = command
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", quote::quote(v)));
    let words: Vec<String> = assignments
        .chain(std::iter::once(quote::quote(command.program.as_str())))
        .chain(command.args.iter().map(|a| quote::quote(a)))
        .collect();
    println!("{}", words.join(" "));
    Ok(0)
}
