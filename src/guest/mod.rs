//! The guest role (`nixos-shell-guest`): applies the host facts before the
//! console login.
//!
//! The module's systemd unit runs it once per boot, before the getty on the
//! console and before sshd. It finds the session share the CLI passed to
//! QEMU (9p tag [`SESSION_TAG`](crate::schema::facts::SESSION_TAG)), reads the host facts from it and applies
//! them one step at a time: mount the shares, install root's authorized keys,
//! write the login environment, size the console and, when the host asked
//! for a command, run it (on the console, or with its streams on the
//! virtio-serial ports of `schema::ports`), hand its status back and power
//! off.
//!
//! With `--follow-resizes` the same binary is the resize follower instead
//! ([`resize`]): a second unit that keeps the console at the host
//! terminal's size for as long as the VM runs.
//!
//! The role never stops the boot: a VM started without nixos-shell has no
//! session share and the role does nothing; malformed facts are reported on
//! the console and ignored; a step that fails is reported and the others go
//! on. The process exits 0 in all those cases, so the unit never fails.
//!
//! Everything here is Linux-only (mount(2), reboot(2), TIOCSCTTY, sysfs):
//! the role runs in a NixOS guest. The crate still builds for a macOS host,
//! whose binary refuses the role in one line.

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
mod shell;

#[cfg(target_os = "linux")]
use camino::Utf8Path;

use crate::cli::GuestArgs;
#[cfg(target_os = "linux")]
use crate::schema::facts::{CommandIo, GUEST_AUTHORIZED_KEYS_DIR, GUEST_LOGIN_ENV, SESSION_TAG};
#[cfg(target_os = "linux")]
use report::Reporter;

/// The user whose authorized keys the host facts carry.
#[cfg(target_os = "linux")]
const KEYS_USER: &str = "root";

/// On any other system (a macOS host): no guest role.
#[cfg(not(target_os = "linux"))]
pub fn run(args: GuestArgs) -> anyhow::Result<u8> {
    let _ = (args.console, args.follow_resizes);
    anyhow::bail!("the guest role runs only in a Linux guest")
}

#[cfg(target_os = "linux")]
pub fn run(args: GuestArgs) -> anyhow::Result<u8> {
    let reporter = Reporter;
    if args.follow_resizes {
        return Ok(resize::follow(&args.console, &reporter));
    }
    shares::load_modules();
    let tags = shares::discover(Utf8Path::new(shares::SYSFS_9P_DRIVER));
    if !tags.iter().any(|tag| tag == SESSION_TAG) {
        reporter.say(&format!(
            "no host facts (no 9p share tagged {SESSION_TAG}); nothing to do"
        ));
        return Ok(0);
    }
    if let Err(err) = session::mount() {
        reporter.warn(&format!("{err:#}"));
        return Ok(0);
    }
    let facts = match session::read_facts() {
        Ok(facts) => facts,
        Err(message) => {
            reporter.warn(&message);
            return Ok(0);
        }
    };
    apply(&facts, &args, &tags, &reporter);
    Ok(0)
}

/// Applies the facts step by step; each failure is reported and the next
/// step still runs.
#[cfg(target_os = "linux")]
fn apply(
    facts: &crate::schema::facts::HostFacts,
    args: &GuestArgs,
    tags: &[String],
    reporter: &Reporter,
) {
    for share in &facts.mounts {
        let nine_p = share.protocol == crate::schema::manifest::Protocol::NineP;
        if nine_p && !tags.iter().any(|tag| tag == &share.tag) {
            reporter.warn(&format!(
                "share {} for {} was not passed to QEMU; not mounted",
                share.tag, share.guest_path
            ));
            continue;
        }
        reporter.check(mount::mount_share(share));
    }
    let keys_file = Utf8Path::new(GUEST_AUTHORIZED_KEYS_DIR).join(KEYS_USER);
    reporter.check(keys::install(&keys_file, &facts.authorized_keys));
    let own_path = std::env::var("PATH").ok();
    let guest_path = command::guest_path(own_path.as_deref(), |dir| Utf8Path::new(dir).is_dir());
    let shell = match shell::choose(facts, guest_path.split(':'), |path| path.is_file()) {
        shell::Choice::Use(path) => Some(path),
        shell::Choice::Keep => None,
        shell::Choice::Missing(line) => {
            reporter.warn(&line);
            None
        }
    };
    reporter.check(login_env::install(
        Utf8Path::new(GUEST_LOGIN_ENV),
        &login_env::script(facts, shell.as_deref()),
    ));
    if let Some(size) = facts.terminal {
        reporter.check(console::set_size(&args.console, size));
    }
    if let Some(command) = &facts.command {
        let shell = shell.as_deref();
        let ran = match facts.command_io {
            CommandIo::Console => {
                command::run_on_console(&args.console, command, facts, shell, &guest_path)
            }
            CommandIo::Ports => command::run_with_ports(command, facts, shell, &guest_path),
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
    }
}
