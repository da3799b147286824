//! The guest role (`nixos-shell-guest`): applies the host facts, one unit
//! of the module per step ([`GuestStep`](crate::cli::GuestStep)).
//!
//! - `prepare`, early in the boot (before `sysinit.target`, so before every
//!   ordinary service): finds the session share the CLI passed to QEMU (9p
//!   tag [`SESSION_TAG`](crate::schema::facts::SESSION_TAG)), reads the
//!   host facts from it, mounts the shares, installs root's authorized keys
//!   and writes root's login environment.
//! - `follow-resizes` ([`resize`]), after `prepare` and before `command`
//!   and the console's getty: the one owner of the console's size, which it
//!   keeps at the host terminal's for as long as the VM runs; it is started
//!   once the console has the terminal's latest size.
//! - `serve-attach` ([`attach`]), after `prepare`, while the VM runs: the
//!   sessions of `nixos-shell --attach`.
//! - `command`, once the system is up and before the console's getty: when
//!   the host asked for a command, runs it (on the console, or with its
//!   streams on the virtio-serial ports of `schema::ports`), hands its
//!   status back and powers off.
//!
//! The role never stops the boot: a VM started without nixos-shell has no
//! session share and the role does nothing; malformed facts are reported on
//! the console and ignored; a step that fails is reported and the others go
//! on. The process exits 0 in all those cases, so no unit ever fails.
//!
//! Everything here is Linux-only (mount(2), reboot(2), TIOCSCTTY, sysfs):
//! the role runs in a NixOS guest. The crate still builds for a macOS host,
//! whose binary refuses the role in one line.

#[cfg(target_os = "linux")]
mod attach;
#[cfg(target_os = "linux")]
mod command;
#[cfg(target_os = "linux")]
mod console;
#[cfg(target_os = "linux")]
mod keys;
#[cfg(target_os = "linux")]
mod login_env;
#[cfg(target_os = "linux")]
mod mount;
#[cfg(target_os = "linux")]
mod ports;
#[cfg(target_os = "linux")]
mod power;
#[cfg(target_os = "linux")]
mod report;
#[cfg(target_os = "linux")]
mod resize;
#[cfg(target_os = "linux")]
mod session;
#[cfg(target_os = "linux")]
mod shares;
#[cfg(target_os = "linux")]
mod user_shell;

#[cfg(target_os = "linux")]
use camino::{Utf8Path, Utf8PathBuf};

use crate::cli::GuestArgs;
#[cfg(target_os = "linux")]
use crate::cli::GuestStep;
#[cfg(target_os = "linux")]
use crate::schema::facts::{
    CommandIo, HostFacts, GUEST_AUTHORIZED_KEYS_DIR, GUEST_LOGIN_ENV, SESSION_TAG,
};
#[cfg(target_os = "linux")]
use report::Reporter;

/// The user whose authorized keys the host facts carry.
#[cfg(target_os = "linux")]
const KEYS_USER: &str = "root";

/// On any other system (a macOS host): no guest role.
#[cfg(not(target_os = "linux"))]
pub fn run(args: GuestArgs) -> anyhow::Result<u8> {
    let _ = args.step;
    anyhow::bail!("the guest role runs only in a Linux guest")
}

#[cfg(target_os = "linux")]
pub fn run(args: GuestArgs) -> anyhow::Result<u8> {
    let reporter = Reporter;
    Ok(match args.step {
        GuestStep::Prepare => prepare(&reporter),
        GuestStep::Command { console } => command(&console, &reporter),
        GuestStep::FollowResizes { console } => resize::follow(&console, &reporter),
        GuestStep::ServeAttach => attach::serve(&reporter),
    })
}

/// The early step: the session share, the shares, root's keys and login
/// environment. Without a session share (a VM started by its own run
/// script) it says so and does nothing.
#[cfg(target_os = "linux")]
fn prepare(reporter: &Reporter) -> u8 {
    shares::load_modules();
    let tags = shares::discover(Utf8Path::new(shares::SYSFS_9P_DRIVER));
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
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
fn guest_path() -> String {
    let own_path = std::env::var("PATH").ok();
    command::guest_path(own_path.as_deref(), |dir| Utf8Path::new(dir).is_dir())
}

/// The user's shell in the guest, and the line to say when it has none.
#[cfg(target_os = "linux")]
fn user_shell(facts: &HostFacts) -> (Option<Utf8PathBuf>, Option<String>) {
    let guest_path = guest_path();
    match user_shell::choose(facts, guest_path.split(':'), |path| path.is_file()) {
        user_shell::Choice::Use(path) => (Some(path), None),
        user_shell::Choice::Keep => (None, None),
        user_shell::Choice::Missing(line) => (None, Some(line)),
    }
}
