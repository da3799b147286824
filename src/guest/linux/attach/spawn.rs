//! One attached session in the guest: its program (the user's shell as a
//! login shell, or `SHELL -c CMD`) started in a session of its own, with a
//! terminal of its own (a pseudo-terminal sized as the client's) or with
//! pipes for its standard streams, in the client's directory when the
//! guest has it, with the host's variables and the client's `TERM`.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::pty::OpenptFlags;
use rustix::termios::{tcsetwinsize, Winsize};

use crate::guest::linux::command::{self, GuestEnv};
use crate::guest::linux::{login_env, session, user_shell};
use crate::schema::attach::Request;
use crate::schema::facts::{HostFacts, GUEST_DIR};
use crate::schema::ports::TerminalSize;

/// The session's end of its program's streams.
pub enum Io {
    /// The pseudo-terminal's master: output and input both.
    Terminal { master: OwnedFd },
    /// The pipes' ends: `None` once closed.
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
}

/// A started session.
pub struct Started {
    pub child: Child,
    pub io: Io,
    /// The session's own directory (its terminal's terminfo entry), removed
    /// with the session.
    pub dir: Option<Utf8PathBuf>,
}

/// Starts session `id` of `request` for the host of `facts`, `guest_path`
/// being the guest's `PATH`.
pub fn start(id: u32, request: &Request, facts: &HostFacts, guest_path: &str) -> Result<Started> {
    let facts = HostFacts {
        cwd: request.cwd.clone(),
        term: request.term.clone(),
        ..facts.clone()
    };
    let dir = Utf8Path::new(GUEST_DIR).join("attach").join(id.to_string());
    let terminfo_dir = terminfo_dir(request, &facts, &dir)?;
    let own_dirs = std::env::var("TERMINFO_DIRS").ok();
    let guest = GuestEnv {
        path: Some(guest_path),
        terminfo_dir: terminfo_dir.clone(),
        terminfo_dirs: own_dirs.as_deref(),
    };
    let mut program = program(request, &facts, guest_path);
    program
        .current_dir(command::working_dir(&facts, |dir| dir.is_dir()))
        .envs(command::environment(&facts, &guest));
    if request.command.is_none() {
        // The login environment the console's login uses applies the
        // rest of the facts (`guest::login_env`).
        program
            .env(login_env::ATTACHED, "1")
            .env(login_env::BECAME, "1");
        if let Some(dir) = &terminfo_dir {
            program.env(login_env::TERMINFO, dir.as_str());
        }
    }
    let (child, io) = if request.terminal {
        with_terminal(program, request.size)?
    } else {
        with_pipes(program)?
    };
    Ok(Started {
        child,
        io,
        dir: dir.exists().then_some(dir),
    })
}

/// Where the terminal's entry is: the client's own, written into the
/// session's directory, else the host's in the session share when the
/// client's `TERM` is the one the VM was started with.
fn terminfo_dir(
    request: &Request,
    facts: &HostFacts,
    dir: &Utf8Path,
) -> Result<Option<Utf8PathBuf>> {
    let (Some(term), Some(bytes)) = (&request.term, &request.terminfo) else {
        return Ok(session::terminfo_dir(facts));
    };
    let Some(first) = term.chars().next().filter(|_| !term.contains('/')) else {
        return Ok(None);
    };
    let terminfo = dir.join("terminfo");
    let leaf = terminfo.join(first.to_string());
    std::fs::create_dir_all(&leaf).with_context(|| format!("cannot create {leaf}"))?;
    std::fs::write(leaf.join(term), bytes)
        .with_context(|| format!("cannot write the terminfo entry in {leaf}"))?;
    Ok(Some(terminfo))
}

/// The program: `SHELL -c CMD`, or the user's shell as a login shell.
fn program(request: &Request, facts: &HostFacts, guest_path: &str) -> Command {
    // The user's shell when the guest has it (the login environment says
    // on the console when it has not).
    let shell = match user_shell::choose(facts, guest_path.split(':'), |path| path.is_file()) {
        user_shell::Choice::Use(path) => Some(path),
        user_shell::Choice::Keep | user_shell::Choice::Missing(_) => None,
    };
    if let Some(toplevel) = &request.switch {
        // This very role's `switch` step: the server's own executable,
        // wherever the system installed it.
        let own = std::env::current_exe().unwrap_or_else(|_| "nixos-shell-guest".into());
        let mut program = Command::new(own);
        program.arg("switch").arg(toplevel.as_str());
        if let Some(from) = &request.switch_from {
            program
                .arg(format!("--id={}", from.id))
                .arg(format!("--stdout={}", from.stdout))
                .arg(format!("--stderr={}", from.stderr));
        }
        if let Some(registration) = &request.switch_registration {
            program.arg(format!("--registration={registration}"));
        }
        return program;
    }
    match &request.command {
        Some(cmd) => {
            let mut program = Command::new(shell.unwrap_or_else(|| command::SHELL.into()));
            program.arg("-c").arg(cmd);
            program
        }
        None => {
            let mut program = Command::new(shell.unwrap_or_else(roots_shell));
            program.arg("-l");
            program
        }
    }
}

/// Root's login shell from `/etc/passwd` (NixOS's `users.users.root.shell`),
/// else `/bin/sh`.
fn roots_shell() -> Utf8PathBuf {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd
                .lines()
                .find(|line| line.starts_with("root:"))
                .and_then(|line| line.split(':').nth(6))
                .filter(|shell| !shell.is_empty())
                .map(Utf8PathBuf::from)
        })
        .unwrap_or_else(|| command::SHELL.into())
}

/// Starts `program` on a new pseudo-terminal of `size`, its controlling
/// terminal.
fn with_terminal(mut program: Command, size: Option<TerminalSize>) -> Result<(Child, Io)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .context("cannot open a pseudo-terminal")?;
    rustix::pty::grantpt(&master).context("cannot set up a pseudo-terminal")?;
    rustix::pty::unlockpt(&master).context("cannot set up a pseudo-terminal")?;
    let name =
        rustix::pty::ptsname(&master, Vec::new()).context("cannot name a pseudo-terminal")?;
    let slave = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(name.to_string_lossy().as_ref())
        .context("cannot open a pseudo-terminal")?;
    if let Some(size) = size {
        set_size(&master, size);
    }
    program
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let child = command::spawn_in_new_session(program, true).context("cannot start the session")?;
    nonblocking(&master)?;
    Ok((child, Io::Terminal { master }))
}

/// The size asked for a session's stdin and stdout pipes.
const PIPE_SIZE: usize = 1024 * 1024;

/// Starts `program` with pipes for its standard streams.
fn with_pipes(mut program: Command) -> Result<(Child, Io)> {
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("cannot create a pipe")
    };
    let (stdin_read, stdin) = pipe()?;
    let (stdout, stdout_write) = pipe()?;
    let (stderr, stderr_write) = pipe()?;
    program
        .stdin(Stdio::from(stdin_read))
        .stdout(Stdio::from(stdout_write))
        .stderr(Stdio::from(stderr_write));
    // Spawned and dropped at once, so that the pipes' other ends are the
    // program's alone and read as closed when it ends.
    let child =
        command::spawn_in_new_session(program, false).context("cannot start the session")?;
    for end in [&stdin, &stdout, &stderr] {
        nonblocking(end)?;
    }
    // A stream's pipe holds as much as the kernel lets it (1 MiB by
    // default, `fs.pipe-max-size`), so the server and the program take
    // turns in large pieces: every turn is a switch of the guest's CPU.
    // The default size still works, only slower.
    for end in [&stdin, &stdout] {
        let _ = rustix::pipe::fcntl_setpipe_size(end, PIPE_SIZE);
    }
    Ok((
        child,
        Io::Pipes {
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr: Some(stderr),
        },
    ))
}

fn nonblocking(fd: &OwnedFd) -> Result<()> {
    rustix::io::ioctl_fionbio(fd, true).context("cannot set up the session's streams")
}

/// Sets the session's terminal to `size`; its foreground program gets
/// SIGWINCH.
pub fn set_size(master: &OwnedFd, size: TerminalSize) {
    let _ = tcsetwinsize(
        master,
        Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    );
}
