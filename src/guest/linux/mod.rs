//! The guest role on Linux, where it runs (see the role's header in
//! `guest`): one function per step, and a module per concern of theirs.

mod attach;
mod command;
mod console;
pub(crate) mod host_nix;
mod keys;
mod login_env;
mod mount;
mod ports;
mod power;
mod report;
mod resize;
mod session;
mod switch;
mod tags;
mod user_shell;

use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::{GuestArgs, GuestStep};
use crate::schema::facts::{
    CommandIo, HostFacts, GUEST_AUTHORIZED_KEYS_DIR, GUEST_LOGIN_ENV, SESSION_TAG,
};
use report::Reporter;

/// The user whose authorized keys the host facts carry.
const KEYS_USER: &str = "root";

/// Runs the step `args` names; every failure is reported, so the status is
/// 0, except `switch`'s, which is the activation's for the host to report.
pub fn run(args: GuestArgs) -> anyhow::Result<u8> {
    let reporter = Reporter;
    Ok(match args.step {
        GuestStep::Prepare => prepare(&reporter),
        GuestStep::Command { console } => command(&console, &reporter),
        GuestStep::FollowResizes { console } => resize::follow(&console, &reporter),
        GuestStep::ServeAttach => attach::serve(&reporter),
        GuestStep::Switch {
            toplevel,
            id,
            stdout,
            stderr,
            registration,
        } => switch::switch(
            &toplevel,
            id.as_deref(),
            switch::Offsets { stdout, stderr },
            registration.as_deref(),
        ),
        GuestStep::Activate { record, program } => switch::activate(&record, &program),
        GuestStep::ServeHostNix => host_nix::serve(&reporter),
    })
}

/// The early step: the session share, the shares, root's keys and login
/// environment. Without a session share (a VM started by its own run
/// script) it says so and does nothing.
fn prepare(reporter: &Reporter) -> u8 {
    tags::load_modules();
    let tags = tags::discover(Utf8Path::new(tags::SYSFS_9P_DRIVER));
    if !tags.iter().any(|tag| tag == SESSION_TAG) {
        reporter.say(&format!(
            "no host facts (no 9p share tagged {SESSION_TAG}); nothing to do"
        ));
        return 0;
    }
    if let Err(err) = session::mount() {
        reporter.warn(&format!("{err:#}"));
        return 0;
    }
    let facts = match session::read_facts() {
        Ok(facts) => facts,
        Err(message) => {
            reporter.warn(&message);
            return 0;
        }
    };
    for share in &facts.mounts {
        let nine_p = share.protocol == crate::schema::manifest::Protocol::NineP;
        if nine_p && !tags.iter().any(|tag| tag == &share.tag) {
            reporter.warn(&format!(
                "share {} for {} was not passed to QEMU; not mounted",
                share.tag, share.guest_path
            ));
            continue;
        }
        reporter.check(mount::mount_share_within(share, mount::MOUNT_TIMEOUT));
    }
    let keys_file = Utf8Path::new(GUEST_AUTHORIZED_KEYS_DIR).join(KEYS_USER);
    reporter.check(keys::install(&keys_file, &facts.authorized_keys));
    let (shell, missing) = user_shell(&facts);
    if let Some(line) = missing {
        reporter.warn(&line);
    }
    reporter.check(login_env::install(
        Utf8Path::new(GUEST_LOGIN_ENV),
        &login_env::script(&facts, shell.as_deref()),
    ));
    0
}

/// The late step, once the system is up: the host's command, if it gave
/// one. The facts are those [`prepare`] mounted; without them (no
/// session, or facts it refused and reported) there is nothing to do.
fn command(console: &Utf8Path, reporter: &Reporter) -> u8 {
    let Ok(facts) = session::read_facts() else {
        return 0;
    };
    let Some(command) = &facts.command else {
        return 0;
    };
    let (shell, _) = user_shell(&facts);
    let guest_path = guest_path();
    let ran = match facts.command_io {
        CommandIo::Console => {
            command::run_on_console(console, command, &facts, shell.as_deref(), &guest_path)
        }
        CommandIo::Ports => command::run_with_ports(command, &facts, shell.as_deref(), &guest_path),
    };
    let exit_code = match ran {
        Ok(code) => code,
        Err(err) => {
            reporter.warn(&format!("{err:#}"));
            command::FAILED_TO_START
        }
    };
    reporter.check(session::write_result(exit_code));
    reporter.check(power::power_off());
    0
}

/// The guest's `PATH` for what the role starts: NixOS's system directories
/// before the unit's own.
fn guest_path() -> String {
    let own_path = std::env::var("PATH").ok();
    command::guest_path(own_path.as_deref(), |dir| Utf8Path::new(dir).is_dir())
}

/// The user's shell in the guest, and the line to say when it has none.
fn user_shell(facts: &HostFacts) -> (Option<Utf8PathBuf>, Option<String>) {
    let guest_path = guest_path();
    match user_shell::choose(facts, guest_path.split(':'), |path| path.is_file()) {
        user_shell::Choice::Use(path) => (Some(path), None),
        user_shell::Choice::Keep => (None, None),
        user_shell::Choice::Missing(line) => (None, Some(line)),
    }
}
