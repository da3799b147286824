//! `nixos-shell --switch [CONFIG]`: the running VM of CONFIG follows its
//! configuration without a reboot. CONFIG names the VM as `--attach`
//! finds it (nothing builds when none runs); the build a run would make is
//! made the same way (the [`Plan`]'s builds), compared with the build the VM
//! runs (which its run recorded in the registry), and activated in the
//! guest by the guest role's `switch` step through an attach session. What
//! a switch cannot change is named ([`restart`]) and the rest still
//! switched; with `--restart`, such a build restarts the VM instead: its
//! holder powers it off and starts it again from the new build
//! (`attach::holder::restart`), and this side returns once the new guest
//! answers. [`watch`] does it again on every save.

pub mod restart;
pub mod watch;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::host::attach;
use crate::host::attach::registry::{self, Entry};
use crate::host::compose::Plan;
use crate::host::nix::{self, BuildResult, Built};
use crate::host::read::Host;
use crate::host::settings::{Build, Config, Switch, Target};
use restart::Boot;

/// The VM a switch acts on, found before anything builds.
pub struct Running {
    /// Its registry entry, which leads to its holder.
    pub entry: Entry,
    /// The build it runs, when its nixos-shell recorded one that is still
    /// in the store.
    pub build: Option<BuildResult>,
}

impl Running {
    /// The running VM of `installable`; one line when none runs, or when
    /// what it runs says no switch can reach it.
    pub fn find(target: &Target, host: &Host) -> Result<Running> {
        let config = target.config.as_ref();
        let entry = attach::running(target, host)?;
        let build = registry::build_of(&entry).and_then(|path| BuildResult::read(&path).ok());
        let running = Running { entry, build };
        running.refuse_unreachable(config)?;
        Ok(running)
    }

    /// Refuses, from the running build's manifest, a VM no switch can
    /// reach: nothing needs building to know it.
    fn refuse_unreachable(&self, config: Option<&Config>) -> Result<()> {
        let Some(build) = &self.build else {
            return Ok(());
        };
        let switch = &build.manifest.switch;
        let restart = attach::start_command(config);
        // qemu-vm.nix: without mountHostNixStore (the default with
        // useNixStoreImage or useBootLoader) the guest's store is an image
        // of the boot closure alone, so no system built later appears in it.
        if build.manifest.host_store == Some(false) {
            bail!(
                "the running VM's store is not the host's (virtualisation.mountHostNixStore is off, \
                 as with useNixStoreImage): a new system cannot reach it; stop it and start it again with `{restart}`"
            );
        }
        if switch.switchable == Some(false) {
            bail!(
                "the running VM's system cannot switch (system.switch.enable = false); \
                 stop it and start it again with `{restart}`"
            );
        }
        Ok(())
    }
}

/// `--switch` (and each round of `--watch`): builds, compares, activates;
/// the activation's exit status.
pub fn run(switch: &Switch, host: &Host) -> Result<u8> {
    let config = switch.target.config.as_ref();
    let installable = nix::resolve(config, &host.cwd)?;
    let running = Running::find(&switch.target, host)?;
    if switch.watch {
        return watch::run(switch, host, &installable, running);
    }
    Ok(match once(switch, host, &running)?.switched {
        Switched::Unchanged | Switched::Restarted => 0,
        Switched::Ran(status) => status,
    })
}

/// How one switch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switched {
    /// The VM already ran the build: nothing was done.
    Unchanged,
    /// The activation ran and ended with this status.
    Ran(u8),
    /// `--restart`: the VM was restarted with the new build and answers.
    Restarted,
}

/// One switch and what part of its time the build took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub switched: Switched,
    /// The build's own time (nix's evaluation and build).
    pub build: Duration,
}

/// One switch of `running`: build, compare, activate.
pub fn once(switch: &Switch, host: &Host, running: &Running) -> Result<Round> {
    let (built, build) = build_kept(switch, host, running)?;
    let round = |switched| Round { switched, build };
    let new = &built.result;
    let toplevel = switchable_toplevel(new)?;
    let Some(restarts) = restarts_needed(running, new, &toplevel) else {
        return Ok(round(Switched::Unchanged));
    };
    for line in &restarts {
        eprintln!("nixos-shell: {line}");
    }
    if switch.restart && !restarts.is_empty() {
        restart_with(running, new)?;
        return Ok(round(Switched::Restarted));
    }
    let status = activate(switch, host, running, new, &toplevel, &restarts)?;
    Ok(round(Switched::Ran(status)))
}

/// Builds the switch's system, out-linked beside `running`'s registry
/// entry: the build and the time it took.
fn build_kept(switch: &Switch, host: &Host, running: &Running) -> Result<(Built, Duration)> {
    // Kept beside the VM's registry entry while it runs: the system it is
    // switched to must outlive a garbage collection on the host, since the
    // guest runs it from the host's store.
    let build = Build {
        out_link: Some(registry::result_link(&running.entry)),
        ..switch.build.clone()
    };
    let started = Instant::now();
    let built = Plan::build_only(&build, host)?.builds.realise()?;
    Ok((built, started.elapsed()))
}

/// The system the `new` build names, refused when it cannot switch.
fn switchable_toplevel(new: &BuildResult) -> Result<Utf8PathBuf> {
    let Some(toplevel) = new.manifest.switch.toplevel.clone() else {
        bail!(
            "the build does not name its system (a nixos-shell module older than this nixos-shell); \
             update the module the configuration uses"
        );
    };
    if new.manifest.switch.switchable == Some(false) {
        bail!(
            "the new system cannot switch (system.switch.enable = false); restart the VM to run it"
        );
    }
    Ok(toplevel)
}

/// What switching `running` to `new` (its system `toplevel`) cannot
/// change, one line each; `None` when the VM already runs that build.
fn restarts_needed(
    running: &Running,
    new: &BuildResult,
    toplevel: &Utf8Path,
) -> Option<Vec<String>> {
    Some(match &running.build {
        Some(old) => {
            let old_toplevel = old.manifest.switch.toplevel.as_deref();
            if old.path == new.path || old_toplevel == Some(toplevel) {
                eprintln!("nixos-shell: the VM already runs this build; nothing to switch");
                return None;
            }
            match old_toplevel {
                Some(old_toplevel) => restart::needed(
                    &Boot::read(old_toplevel, &old.run_script),
                    &Boot::read(toplevel, &new.run_script),
                ),
                None => Vec::new(),
            }
        }
        None => {
            eprintln!(
                "nixos-shell: which build the VM runs is unknown; switching without comparing"
            );
            Vec::new()
        }
    })
}

/// `--restart`: has `running`'s holder start the VM again from `new`,
/// and returns once the new guest answers.
fn restart_with(running: &Running, new: &BuildResult) -> Result<()> {
    // The holder records the build it now runs (the registry's `.build`)
    // and keeps the out-link beside its entry, which roots it.
    eprintln!("nixos-shell: restarting the VM with the new build (--restart)");
    let console = match registry::info_of(&running.entry).map(|info| info.console_log) {
        Ok(Some(log)) => format!("its console log {log}"),
        _ => "the terminal it ran in".to_owned(),
    };
    attach::holder::restart(&running.entry, &new.path, &console)?;
    eprintln!(
        "nixos-shell: the VM restarted with {} and answers",
        new.path
    );
    Ok(())
}

/// Activates `toplevel` of the `new` build in the guest of `running`,
/// which still needs the `restarts` it was told of: the activation's
/// status.
fn activate(
    switch: &Switch,
    host: &Host,
    running: &Running,
    new: &BuildResult,
    toplevel: &Utf8Path,
    restarts: &[String],
) -> Result<u8> {
    let registration = new.manifest.switch.registration.as_deref();
    let status = attach::switch(&running.entry, toplevel, registration, host)?;
    describe(status, toplevel);
    if switch.restart && restarts.is_empty() && running.build.is_some() {
        eprintln!("nixos-shell: nothing needed a restart (--restart): switched without one");
    }
    // A VM that now runs all of the new build runs it; one that needs a
    // restart still boots the old one, which the next switch compares.
    if status == 0 && restarts.is_empty() {
        let _ = registry::record_build(&running.entry, &new.path);
    }
    Ok(status)
}

/// Says how the activation of `toplevel` ended, by its status
/// (switch-to-configuration's: 0 done, 2 its activation script failed, 4
/// a unit failed to (re)start, 100 the init interface changed; the
/// Rust implementation, pkgs/by-name/sw/switch-to-configuration-ng).
fn describe(status: u8, toplevel: &Utf8Path) {
    let line = match status {
        0 => format!("switched to {toplevel}"),
        100 => {
            "the new system's init is incompatible with the running one; restart the VM to run it"
                .to_owned()
        }
        4 => "switched, but some units failed to start (status 4)".to_owned(),
        other => format!("the switch failed (status {other}); the VM runs on"),
    };
    eprintln!("nixos-shell: {line}");
}
