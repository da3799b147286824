//! The host role: from the command line to a running VM. Orchestration
//! only; each step lives in its own module:
//!
//! [`settings`] checks the command line, [`resolve`] decides what to build,
//! [`build`] plans the `nix build`s that [`nix`] runs ([`nix_output`]
//! carries nix's stderr to the user), [`launch`] composes
//! the VM command from the result, [`disk`] picks its disk image, [`facts`]
//! gathers the host facts for the guest, [`session`] holds the private temp
//! dir, [`terminal`] saves and restores the terminal, [`interrupt`] survives
//! Ctrl-C, [`quote`] prints commands for `--dry-run`. [`generate`] prints
//! shell completions and the man page for packagers, before anything else.

mod build;
mod disk;
mod facts;
mod generate;
mod interrupt;
mod launch;
mod nix;
mod nix_output;
mod quote;
mod resolve;
mod session;
mod settings;
mod terminal;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::process::Command;

use anyhow::{bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::HostArgs;
use crate::schema::facts::{GuestResult, FACTS_FILE, RESULT_FILE};
use crate::schema::manifest::Manifest;
use build::{Locations, Realised};
use disk::DiskPlan;
use launch::{Launch, VmCommand};
use resolve::Installable;
use session::Session;
use settings::Settings;

pub fn run(args: HostArgs) -> Result<u8> {
    if let Some(text) = generate::requested(&args)? {
        std::io::stdout()
            .write_all(&text)
            .context("could not write to standard output")?;
        return Ok(0);
    }
    interrupt::install();
    let cwd = std::env::current_dir().context("could not read the current directory")?;
    let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(|p| {
        anyhow::anyhow!(
            "the current directory {} is not UTF-8; run nixos-shell elsewhere",
            p.display()
        )
    })?;
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let settings = Settings::from_args(args, &cwd)?;
    disk::refuse_conflict(&env, settings.ephemeral, settings.disk.as_deref())?;
    let installable = resolve::resolve(settings.target.as_deref(), &cwd)?;
    let locations = Locations::from_env(&env);

    if settings.dry_run {
        return dry_run(&installable, &settings, &locations, &env, &cwd);
    }

    let session = Session::create()?;
    let out_link = settings
        .out_link
        .clone()
        .unwrap_or_else(|| session.out_link());
    let plan = build::plan(&installable, &settings, &locations, &out_link, &cwd)?;
    let (result, identity) = match build::realise(&plan)? {
        Realised::Built { result, identity } => (result, identity),
        Realised::Failed(code) => return Ok(code),
        Realised::Interrupted => return Ok(interrupt::EXIT_INTERRUPTED),
    };
    let run_script = launch::find_run_script(&result)?;
    if settings.build_only {
        println!("{run_script}");
        session.close()?;
        return Ok(0);
    }
    let manifest = launch::read_manifest(&result)?;
    let code = run_vm(
        &identity, &settings, &env, &cwd, &session, &manifest, run_script,
    )?;
    session.close()?;
    Ok(code)
}

/// Starts the VM of a build and returns nixos-shell's exit status.
fn run_vm(
    identity: &str,
    settings: &Settings,
    env: &BTreeMap<String, String>,
    cwd: &Utf8Path,
    session: &Session,
    manifest: &Manifest,
    run_script: Utf8PathBuf,
) -> Result<u8> {
    let (disk_image, _lock) = disk_image(identity, settings, env, session, manifest)?;

    let home = facts::home(env);
    let found_user = env
        .get("USER")
        .cloned()
        .unwrap_or_else(|| "root".to_owned());
    let profile = facts::nix_profile(&home, &found_user);
    let shares = launch::shares(
        manifest,
        &home,
        profile.as_deref(),
        settings.no_home,
        &settings.mounts,
    );
    let host_system = settings
        .host_system
        .clone()
        .unwrap_or_else(facts::host_system);
    let host_facts = facts::compose(
        env,
        cwd,
        manifest,
        &host_system,
        facts::Found {
            terminal: terminal::size(),
            authorized_keys: facts::authorized_keys(&home, env),
            mounts: launch::guest_mounts(&shares, manifest.mounts.msize),
            command: settings.command.clone(),
        },
    );
    let facts_path = session.share().join(FACTS_FILE);
    let json =
        serde_json::to_string_pretty(&host_facts).context("could not encode the host facts")?;
    std::fs::write(&facts_path, json).with_context(|| format!("could not write {facts_path}"))?;

    let command = launch::compose(&Launch {
        run_script,
        settings,
        session_share: &session.share(),
        private_tmp: &session.tmp(),
        shares: &shares,
        disk_image,
        memory_backend: manifest.memory_backend.as_ref(),
        env,
    });
    let status = start_vm(&command)?;
    match &settings.command {
        None => Ok(status),
        Some(_) => command_status(&session.share().join(RESULT_FILE), status),
    }
}

/// The disk image to set and the lock guarding it (kept while the VM runs).
fn disk_image(
    identity: &str,
    settings: &Settings,
    env: &BTreeMap<String, String>,
    session: &Session,
    manifest: &Manifest,
) -> Result<(Option<Utf8PathBuf>, Option<File>)> {
    disk::refuse_without_image(
        manifest.disk_image.as_deref(),
        settings.ephemeral,
        settings.disk.as_deref(),
    )?;
    let plan = disk::plan(
        env,
        settings.ephemeral,
        settings.disk.as_deref(),
        manifest.disk_image.as_deref(),
    );
    match plan {
        DiskPlan::LeaveAlone => Ok((None, None)),
        DiskPlan::Ephemeral => Ok((Some(session.ephemeral_image(&manifest.name)), None)),
        DiskPlan::Given(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("could not create {dir} for --disk; check the path")
                })?;
            }
            Ok((Some(path), None))
        }
        DiskPlan::State => {
            let Some(dir) = disk::state_dir(env) else {
                bail!("neither XDG_STATE_HOME nor HOME is set, so the VM's disk image has no home; set one, or pass --ephemeral or --disk PATH");
            };
            let image = dir.join(disk::state_image_name(&manifest.name, identity));
            match disk::try_lock(&image)? {
                Some(lock) => Ok((Some(image), Some(lock))),
                None => {
                    eprintln!("nixos-shell: {image} is in use by another nixos-shell; this VM gets a temporary disk image");
                    Ok((Some(session.ephemeral_image(&manifest.name)), None))
                }
            }
        }
    }
}

/// Runs the VM in this terminal; its exit status (128 + N after signal N).
fn start_vm(command: &VmCommand) -> Result<u8> {
    let saved = terminal::SavedTerminal::save();
    let status = Command::new(&command.program)
        .args(&command.args)
        .envs(&command.env)
        .status()
        .with_context(|| format!("could not start {}", command.program));
    drop(saved);
    Ok(nix::exit_code(&status?))
}

/// The guest command's status from `result.json`.
fn command_status(path: &Utf8Path, vm_status: u8) -> Result<u8> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) => bail!(
            "the VM ended (status {vm_status}) without reporting the command's status ({path} is missing); \
             check the console output above, and that the configuration includes the nixos-shell module"
        ),
    };
    let result: GuestResult = serde_json::from_str(&text)
        .with_context(|| format!("{path} is malformed; check the console output above"))?;
    Ok(u8::try_from(result.exit_code & 0xff).unwrap_or(1))
}

/// `--dry-run`: the nix command and the VM command, shell-quoted.
fn dry_run(
    installable: &Installable,
    settings: &Settings,
    locations: &Locations,
    env: &BTreeMap<String, String>,
    cwd: &Utf8Path,
) -> Result<u8> {
    let session = Utf8PathBuf::from("<private-temp-dir>");
    let out_link = settings
        .out_link
        .clone()
        .unwrap_or_else(|| session.join("result"));
    let plan = build::plan(installable, settings, locations, &out_link, cwd)?;
    for (n, step) in plan.steps.iter().enumerate() {
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
    let user_shares = launch::shares(
        &no_manifest_shares(),
        Utf8Path::new("/"),
        None,
        true,
        &settings.mounts,
    );
    let disk_image = match disk::plan(env, settings.ephemeral, settings.disk.as_deref(), None) {
        DiskPlan::Ephemeral => Some(session.join("<name>.qcow2")),
        DiskPlan::Given(path) => Some(path),
        _ => None,
    };
    let command = launch::compose(&Launch {
        run_script: Utf8PathBuf::from("<result>/bin/run-<name>-vm"),
        settings,
        session_share: &session.join("share"),
        private_tmp: &session.join("tmp"),
        shares: &user_shares,
        disk_image,
        memory_backend: None,
        env,
    });
    println!(
        "# run (<result> and <name> come from the build; the module's shares (home, nix profile,"
    );
    println!("# extraMounts) and its disk image are added after it, before the --mount shares)");
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

/// A manifest that asks for no shares, to compose the `--mount` shares alone.
fn no_manifest_shares() -> Manifest {
    use crate::schema::manifest::{CacheMode, Mounts, MANIFEST_VERSION};
    Manifest {
        version: MANIFEST_VERSION,
        name: String::new(),
        system: String::new(),
        disk_image: None,
        inherit_path: false,
        memory_backend: None,
        mounts: Mounts {
            mount_home: false,
            mount_home_read_only: false,
            mount_nix_profile: false,
            cache: CacheMode::Loose,
            msize: 0,
            extra_mounts: Vec::new(),
        },
    }
}
